"""The per-video exit table (`training.video_trees`) on a tiny real log."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from learned.base import LearnedInput
from learned.features import VIDEO_ONLY, best_encoding, video_only
from learned.hazard_gbdt import fit_features
from segint.errors import SegintError
from segint.vocab import Vocab
from training.video_trees import fit_video_table, video_rows


@pytest.fixture(scope="module")
def fitted(tiny_input: LearnedInput):  # type: ignore[no-untyped-def]
    data = dataclasses.replace(tiny_input, user_table=None)
    videos = Vocab(data.fit.filter(pl.Series(~data.valid))["video_id"].to_numpy())
    table = fit_video_table(data.fit, data.valid, videos, 40, 0.5, 0, 1, data.video_table)
    return data, videos, table


def test_table_is_what_the_trees_give_a_test_row_of_the_video(fitted) -> None:  # type: ignore[no-untyped-def]
    """Each table row equals the exit distribution hazard-gbdt on the video's own features
    (fitted as `segint baselines` fits it) gives a test row of that video with the same N,
    normalised over its columns; test rows are scored by the same trees."""
    data, videos, table = fitted
    ref = best_encoding(data, lambda feats: fit_features(data, video_only(feats)))
    assert ref.exit_dist is not None
    idx = videos.lookup(data.test["video_id"].to_numpy())
    n = data.test["n_segments"].to_numpy()
    same = table.mixed(idx, n)
    assert same.sum() >= 20, "the fixture should hold test rows of vocabulary videos"
    want = ref.exit_dist[same] / ref.exit_dist[same].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(table.dist[idx[same]], want, rtol=1e-9, atol=1e-12)
    assert table.meta["settings"]["encoding"] == ref.settings["encoding"]


def test_rows_cover_the_vocabulary_seen_in_the_fitting_rows(fitted) -> None:  # type: ignore[no-untyped-def]
    """Row 0 (unknown) and vocabulary videos absent from the fitting rows get N = 0 (never
    mixed); every other row is a distribution over its N + 1 outcomes, N from the video's
    latest fitting row."""
    data, videos, table = fitted
    assert table.dist.shape == (len(videos), 40) and table.weight == 0.5
    assert table.n_segments[0] == 0 and not table.dist[0].any()
    rows = np.flatnonzero(table.n_segments > 0)
    assert len(rows) == len(videos) - 1  # every training video is a fitting video
    np.testing.assert_allclose(table.dist[rows].sum(axis=1), 1.0)
    past_n = np.arange(40)[None, :] > table.n_segments[rows, None]
    assert not table.dist[rows][past_n].any()
    latest = data.fit.sort("time_ms").group_by("video_id").agg(pl.col("n_segments").last())
    n_of = dict(zip(latest["video_id"].to_list(), latest["n_segments"].to_list(), strict=True))
    assert [n_of[int(v)] for v in videos.ids[rows - 1]] == table.n_segments[rows].tolist()


def test_video_rows_take_the_latest_duration_and_no_outcome() -> None:
    """One pseudo view per vocabulary video: the latest row's duration and N, an outside user
    after every fitting row, no outcome (play 0, exit 0)."""
    fit = pl.DataFrame(
        {
            "user_id": [1, 2, 3, 4],
            "video_id": [10, 10, 20, 30],
            "time_ms": [5, 9, 7, 8],
            "duration_ms": [9000, 14000, 3000, 4000],
            "n_segments": [2, 3, 1, 1],
            "play_time_ms": [100, 200, 300, 400],
            "exit_slot": [0, 1, 0, 1],
        }
    )
    pseudo, idx = video_rows(fit, Vocab(np.array([10, 20])))  # 30 is not in the vocabulary
    assert sorted(pseudo["video_id"].to_list()) == [10, 20]
    got = {r["video_id"]: r for r in pseudo.iter_rows(named=True)}
    assert got[10]["duration_ms"] == 14000 and got[10]["n_segments"] == 3
    assert set(pseudo["user_id"]) == {-1} and set(pseudo["time_ms"]) == {10}
    assert set(pseudo["play_time_ms"]) == {0} and set(pseudo["exit_slot"]) == {0}
    assert pseudo.schema == fit.schema
    vocab = Vocab(np.array([10, 20]))
    assert vocab.lookup(pseudo["video_id"].to_numpy()).tolist() == idx.tolist()


def test_needs_training_and_validation_rows(tiny_input: LearnedInput) -> None:
    videos = Vocab(tiny_input.fit["video_id"].to_numpy())
    every = np.ones(tiny_input.fit.height, bool)
    with pytest.raises(SegintError, match="training and validation rows"):
        fit_video_table(tiny_input.fit, every, videos, 40, 0.5, 0)


def test_video_only_keeps_no_user_or_time_feature(tiny_input: LearnedInput) -> None:
    from learned.features import view_features

    feats = video_only(view_features(tiny_input))
    assert set(feats.names) <= set(VIDEO_ONLY)
    assert not {"hour", "user_views", "user_mean_fraction"} & set(feats.names)
    assert feats.fit.shape[1] == len(feats.names) == feats.test.shape[1]
