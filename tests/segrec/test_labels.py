"""Effective-view label: bucket medians, left-closed buckets, training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segrec.labels import REFERENCE_EDGES_S, EffectiveViewLabel, duration_bucket, fit_label


def test_medians_and_labels_by_hand() -> None:
    """Two 30 s buckets: medians of the view ratio per bucket; label = ratio strictly above."""
    duration = np.array([10_000, 20_000, 20_000, 40_000, 50_000, 40_000])
    play = np.array([5_000, 20_000, 30_000, 10_000, 25_000, 40_000])
    # ratios: bucket 0 -> 0.5, 1.0, 1.5 (median 1.0); bucket 1 -> 0.25, 0.5, 1.0 (median 0.5)
    label = fit_label(play, duration, edges_s=(0, 30, 60))
    assert label.medians == pytest.approx((1.0, 0.5))
    assert label(play, duration).tolist() == [0, 0, 1, 0, 0, 1]


def test_buckets_are_left_closed_and_clipped() -> None:
    """30 s exactly opens the second bucket; durations beyond the edges use the end buckets."""
    got = duration_bucket([0, 29_999, 30_000, 59_999, 60_000, 250_000], (0, 30, 60))
    assert got.tolist() == [0, 0, 1, 1, 1, 1]
    assert duration_bucket([199_999, 180_000, 179_999], REFERENCE_EDGES_S).tolist() == [6, 6, 5]


def test_empty_bucket_falls_back_to_overall_median() -> None:
    label = fit_label([10_000, 2_000, 5_000], [20_000, 20_000, 20_000], edges_s=(0, 30, 60))
    assert label.medians == (0.25, 0.25)


def test_round_trip_and_bad_edges() -> None:
    label = fit_label([10_000, 40_000], [20_000, 50_000])
    assert EffectiveViewLabel.from_dict(label.to_dict()) == label
    with pytest.raises(ValueError, match="strictly increasing"):
        fit_label([1], [1_000], edges_s=(0, 30, 30))
    with pytest.raises(ValueError, match="durations"):
        label([1], [0])


def test_short_video_threshold_above_one_means_replay() -> None:
    """A bucket median above 1.0 (0-30 s videos) makes only replays effective views.

    Exit-slot terms: every view that leaves before the end (ratio < 1) is negative, and so is a
    view that stops exactly at the end (ratio 1.0, "strictly above"); only a view that loops
    past the threshold (ratio > median > 1) is positive.
    """
    label = EffectiveViewLabel((0.0, 30.0, 60.0), (1.057, 0.851))
    short = np.full(5, 20_000)
    play = np.array([5_000, 19_999, 20_000, 21_140, 21_200])  # ratios .25, ~1, 1, 1.057, 1.06
    assert label(play, short).tolist() == [0, 0, 0, 0, 1]
    # a 40 s video with threshold 0.851 is effective without finishing
    assert label([34_100, 34_000], [40_000, 40_000]).tolist() == [1, 0]


@pytest.mark.slow
def test_kuairand_short_bucket_is_a_replay_label(shared_data: Path) -> None:
    """On the shared KuaiRand-Pure log (temporal split, training rows) the 0-30 s median is
    above 1: short-video effective views are replays, and they are a subset of completions."""
    from segint.data import load_table
    from segint.splits import TRAIN, assign_split
    from tests.paths import KUAIRAND_LOG

    table = load_table(KUAIRAND_LOG, "kuairand")
    rows = assign_split(table, "temporal", 0) == TRAIN
    train = table.filter(rows)
    label = fit_label(train["play_time_ms"], train["duration_ms"])
    assert label.medians[0] > 1.0  # 1.057 measured
    assert all(m < 1.0 for m in label.medians[1:])  # longer videos: a watched fraction
    short = train.filter(label.bucket(train["duration_ms"].to_numpy()) == 0)
    y = label(short["play_time_ms"], short["duration_ms"]).astype(bool)
    completed = short["exit_slot"].to_numpy() == short["n_segments"].to_numpy()
    assert y.any() and not (y & ~completed).any()
