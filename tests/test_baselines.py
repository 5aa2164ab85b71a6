"""Position baselines against hand-computed statistics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from segint.baselines import BASELINES, baseline_scores, choose_prior_strength


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


def rows_n(videos, exits, n) -> pl.DataFrame:
    k = len(videos)
    return pl.DataFrame(
        {"user_id": [1] * k, "video_id": videos, "exit_slot": exits, "n_segments": n}
    )


# Videos 10, 11 have N = 2; video 20 has N = 3.
FIT_N = rows_n(videos=[10, 10, 11, 20, 20], exits=[0, 2, 1, 3, 0], n=[2, 2, 2, 3, 3])
G2 = np.array([1, 1, 1, 0]) / 3  # exits 0, 2, 1 of the N = 2 views
G3 = np.array([0.5, 0, 0, 0.5])  # exits 3, 0 of the N = 3 views
G_ALL = np.array([2, 1, 1, 1]) / 5
TEST_N = rows_n(videos=[10, 30, 40], exits=[0, 1, 2], n=[2, 3, 4])  # 30: cold, 40: N unseen


def test_all_position_by_length_by_hand():
    """AllPosition|N = exit shares of the fitting views with the test video's N; an N never
    seen gets the global profile."""
    out = baseline_scores(FIT_N, TEST_N, s_max=4)
    np.testing.assert_allclose(out["AllPosition|N"][1], [G2, G3, G_ALL])
    np.testing.assert_allclose(out["AllPosition|N"][0], 1 - np.array([G2, G3, G_ALL]))


def test_item_position_prior_by_length_by_hand():
    """(c_vj + a g^N_j) / (n_v + a): video 10 (exits 0, 2) with a = 2 pseudo-views of g^2;
    cold videos get g^N; a = 0 gives the raw per-video frequencies."""
    out = baseline_scores(FIT_N, TEST_N, s_max=4, prior_strength_n=2.0)
    np.testing.assert_allclose(
        out["ItemPosition+prior|N"][1], [[5 / 12, 2 / 12, 5 / 12, 0], G3, G_ALL]
    )
    raw = baseline_scores(FIT_N, TEST_N, s_max=4, prior_strength_n=0.0)
    np.testing.assert_allclose(raw["ItemPosition+prior|N"][1], [[0.5, 0, 0.5, 0], G3, G_ALL])


def test_prior_strength_is_chosen_on_validation_ndcg():
    """Video 10 left at slot 0 once, other N = 3 videos at slot 2 (g^3 = [1/4, 0, 3/4, 0]).
    a = 0.5 ranks slot 0 first, a = 8 slot 2: a validation exit at slot 2 picks 8 (NDCG@5 1
    against 1/log2(3)), one at slot 0 picks 0.5."""
    train = rows_n(videos=[10, 11, 12, 13], exits=[0, 2, 2, 2], n=[3] * 4)
    a, table = choose_prior_strength(train, rows_n([10], [2], [3]), s_max=4, grid=(0.5, 8.0))
    assert a == 8.0
    assert table == pytest.approx({"0.5": 1 / np.log2(3), "8.0": 1.0})
    a, table = choose_prior_strength(train, rows_n([10], [0], [3]), s_max=4, grid=(0.5, 8.0))
    assert a == 0.5
    assert table == pytest.approx({"0.5": 1.0, "8.0": 1 / np.log2(3)})
