"""Model inputs: vocabularies from training rows, histories from any split, collation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from segint.errors import DataError
from segint.splits import TRAIN, VALID, history_index
from training.data import Example, InteractionDataset, build_vocabs, collate


def _example(h: int, base: int = 1) -> Example:
    return Example(
        user_id=base,
        video_id=base + 1,
        n_segments=3,
        exit_slot=2,
        hist_video_ids=np.arange(h, dtype=np.int64) + 10,
        hist_exit_slots=np.arange(h, dtype=np.int64) % 3 + 1,
        hist_n_segments=np.arange(h, dtype=np.int64) + 2,
    )


def test_collate_pads_variable_histories_with_mask() -> None:
    """Histories of lengths 0, 3, 1 pad to H=3; mask marks real entries; pads are valid ids."""
    batch = collate([_example(0), _example(3, 5), _example(1, 7)])
    assert batch.hist_video_ids.shape == (3, 3) and len(batch) == 3
    assert batch.hist_mask.tolist() == [[False] * 3, [True] * 3, [True, False, False]]
    assert batch.hist_video_ids[1].tolist() == [10, 11, 12]
    assert batch.hist_n_segments[1].tolist() == [2, 3, 4]
    assert batch.hist_exit_slots[1].tolist() == [1, 2, 3]
    # Padding: unknown video 0, exit slot 0, one segment (no division by zero downstream).
    assert batch.hist_video_ids[0].tolist() == [0, 0, 0]
    assert batch.hist_exit_slots[2].tolist() == [1, 0, 0]
    assert batch.hist_n_segments[0].tolist() == [1, 1, 1]
    assert batch.user_ids.tolist() == [1, 5, 7] and batch.video_ids.tolist() == [2, 6, 8]
    assert batch.hist_mask.dtype == torch.bool
    assert all(t.dtype == torch.int64 for k, t in batch.inputs().items() if k != "hist_mask")
    assert set(batch.inputs()) == {
        "user_ids", "hist_video_ids", "hist_exit_slots", "hist_n_segments", "hist_mask",
        "video_ids", "n_segments",
    }  # fmt: skip


def test_collate_without_any_history_gives_one_masked_column() -> None:
    """A batch of users with no history still has H = 1 (fully masked), never H = 0."""
    batch = collate([_example(0), _example(0)])
    assert batch.hist_mask.shape == (2, 1) and not batch.hist_mask.any()


def test_dataset_vocab_from_training_rows_and_history_from_any_split() -> None:
    """Ids unseen in training rows map to 0; a history may hold a validation row."""
    table = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "video_id": [10, 11, 12, 10],
            "time_ms": [100, 200, 300, 100],
            "duration_ms": [12_000, 7_000, 30_000, 9_000],
            "play_time_ms": [3_000, 7_000, 12_000, 9_500],
            "n_segments": [3, 2, 6, 2],
            "exit_slot": [0, 2, 2, 2],
        }
    )
    split = np.array([TRAIN, VALID, TRAIN, TRAIN])
    users, videos = build_vocabs(table, np.flatnonzero(split == TRAIN))
    ds = InteractionDataset(
        table, history_index(table, 5), np.flatnonzero(split == TRAIN), users, videos, 40
    )
    assert len(ds) == 3
    last = ds[1]  # user 1's third view: history = views 2 (valid, video 11) and 1 (video 10)
    assert last.video_id == videos.lookup([12])[0] > 0
    assert last.hist_video_ids.tolist() == [0, videos.lookup([10])[0]]  # video 11: unknown
    assert last.hist_exit_slots.tolist() == [2, 0] and last.hist_n_segments.tolist() == [2, 3]
    assert len(ds[0].hist_video_ids) == 0  # first view: no history
    assert ds.targets()[0].tolist() == [0, 2, 2]


def test_dataset_rejects_videos_longer_than_s_max() -> None:
    """A row with more segments than the model has slots is a data error, not an index crash."""
    table = pl.DataFrame(
        {"user_id": [1], "video_id": [1], "time_ms": [0], "n_segments": [9], "exit_slot": [1]}
    )
    users, videos = build_vocabs(table, [0])
    with pytest.raises(DataError, match="s_max=8"):
        InteractionDataset(table, history_index(table, 2), [0], users, videos, s_max=8)


def test_no_training_rows_is_a_data_error(table: pl.DataFrame) -> None:
    """An empty training split fails with a clear message."""
    with pytest.raises(DataError, match="no training rows"):
        build_vocabs(table, np.array([], dtype=np.int64))


def test_scores_and_exit_dist_put_no_mass_on_impossible_slots() -> None:
    """exit_dist = softmax(-logits) over slots 0..N only; scores are the logits unchanged."""
    from training.inference import scores_and_exit_dist

    logits = np.array([[0.0, 1.0, 2.0, 1e4, 1e4], [3.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    scores, dist = scores_and_exit_dist(logits, np.array([2, 5]))
    assert np.array_equal(scores, logits.astype(np.float64))
    assert np.allclose(dist.sum(axis=1), 1.0)
    assert dist[0, 3:].tolist() == [0.0, 0.0]
    e = np.exp(-np.array([0.0, 1.0, 2.0]))
    assert np.allclose(dist[0, :3], e / e.sum())
    assert dist[1, 0] < dist[1, 1] == dist[1, 4]


def test_complete_views_of_s_max_videos_are_kept() -> None:
    """A row with exit slot == s_max (no slot for its outcome) stays in the data for the MAE;
    the loss functions skip it."""
    table = pl.DataFrame(
        {
            "user_id": [1, 1],
            "video_id": [1, 2],
            "time_ms": [0, 1],
            "n_segments": [3, 2],
            "exit_slot": [3, 1],
        }
    )
    users, videos = build_vocabs(table, [0, 1])
    ds = InteractionDataset(table, history_index(table, 2), [0, 1], users, videos, s_max=3)
    assert len(ds) == 2 and ds.targets()[0].tolist() == [3, 1]
    assert ds[1].hist_exit_slots.tolist() == [3]
