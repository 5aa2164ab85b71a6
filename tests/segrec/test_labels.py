"""Effective-view label: bucket medians, left-closed buckets, training rows only."""

from __future__ import annotations

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
