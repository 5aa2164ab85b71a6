"""Position baselines against hand-computed statistics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from segint.baselines import BASELINES, baseline_scores


def rows(users, videos, exits, n=3) -> pl.DataFrame:
    k = len(users)
    return pl.DataFrame(
        {"user_id": users, "video_id": videos, "exit_slot": exits, "n_segments": [n] * k}
    )


FIT = rows(users=[1, 1, 2, 3], videos=[10, 10, 10, 20], exits=[0, 0, 2, 1])
TEST = rows(users=[1, 9], videos=[10, 30], exits=[0, 1])
GLOBAL = np.array([0.5, 0.25, 0.25, 0.0])


def test_all_item_user_position_by_hand():
    """AllPosition = global exit shares; ItemPosition/UserPosition per key, unseen -> global."""
    out = baseline_scores(FIT, TEST, s_max=4)
    assert set(out) == set(BASELINES)
    np.testing.assert_allclose(out["AllPosition"][1], [GLOBAL, GLOBAL])
    np.testing.assert_allclose(out["AllPosition"][0], 1 - np.array([GLOBAL, GLOBAL]))
    np.testing.assert_allclose(out["ItemPosition"][1], [[2 / 3, 0, 1 / 3, 0], GLOBAL])
    np.testing.assert_allclose(out["UserPosition"][1], [[1, 0, 0, 0], GLOBAL])


def test_item_position_prior_smooths_toward_global():
    """(c_vj + alpha g_j) / (n_v + alpha) with alpha pseudo-views; alpha = 0 is ItemPosition."""
    out = baseline_scores(FIT, TEST, s_max=4, prior_strength=1.0)
    np.testing.assert_allclose(out["ItemPosition+prior"][1][0], [0.625, 0.0625, 0.3125, 0.0])
    raw = baseline_scores(FIT, TEST, s_max=4, prior_strength=0.0)
    np.testing.assert_allclose(raw["ItemPosition+prior"][1], raw["ItemPosition"][1])


def test_random_and_bernoulli_are_seeded():
    """Random and Bernoulli draws repeat with the seed; Bernoulli scores are 0/1."""
    a = baseline_scores(FIT, TEST, s_max=4, seed=5, bernoulli=True)
    b = baseline_scores(FIT, TEST, s_max=4, seed=5, bernoulli=True)
    np.testing.assert_array_equal(a["Random"][0], b["Random"][0])
    assert set(np.unique(a["ItemPosition"][0])) <= {0.0, 1.0}
    np.testing.assert_array_equal(a["ItemPosition"][0], b["ItemPosition"][0])


def test_exits_without_a_slot_are_not_counted():
    """A complete view of an S_max-segment video (exit == S_max) adds no slot count."""
    fit = rows([1, 2], [10, 10], [4, 1], n=4)
    out = baseline_scores(fit, rows([1], [10], [1], n=4), s_max=4)
    assert out["ItemPosition"][1][0].tolist() == pytest.approx([0, 1, 0, 0])
