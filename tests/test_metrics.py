"""HR/NDCG/MAE against hand-computed cases, including ties and complete views."""

from __future__ import annotations

import numpy as np
import pytest

from segint.heads import exit_distribution, expected_exit_slot, outcome_mask
from segint.metrics import eligible_slots, evaluate_scores, exit_ranks, ranking_metrics


def test_ranks_ascending_by_interest():
    """The lowest-interest slot is rank 1; strict ranks only slots 0..N."""
    scores = np.array([[0.5, 0.1, 0.9, 0.3]])
    all4 = eligible_slots([4], 4, "paper")
    assert exit_ranks(scores, [1], all4).tolist() == [1]
    assert exit_ranks(scores, [2], all4).tolist() == [4]
    strict = eligible_slots([2], 4, "strict")  # N = 2: outcomes 0, 1, 2
    assert strict.tolist() == [[True, True, True, False]]
    assert exit_ranks(scores, [2], strict).tolist() == [3]


def test_metric_values_by_hand():
    """HR@K = rank <= K; NDCG@K = 1/log2(rank+1) inside the top K."""
    m = ranking_metrics(np.array([1, 4, 7]))
    assert m["HR@1"] == pytest.approx(1 / 3)
    assert m["HR@5"] == pytest.approx(2 / 3)
    assert m["HR@10"] == pytest.approx(1.0)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / np.log2(5)) / 3)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(5) + 1 / np.log2(8)) / 3)


def test_ties_are_broken_by_a_seeded_permutation():
    """All-equal scores give a uniform rank: mean (S+1)/2, reproducible, seed-dependent."""
    n, s = 4000, 10
    scores = np.zeros((n, s))
    target = np.zeros(n, dtype=np.int64)
    elig = np.ones((n, s), bool)
    r0 = exit_ranks(scores, target, elig, seed=0)
    assert r0.mean() == pytest.approx((s + 1) / 2, rel=0.05)
    assert np.array_equal(r0, exit_ranks(scores, target, elig, seed=0))
    assert not np.array_equal(r0, exit_ranks(scores, target, elig, seed=1))
    # A tie only reorders tied slots: a strictly lower slot always stays ahead.
    scores[:, 5] = -1.0
    assert np.all(exit_ranks(scores, target, elig, seed=0) >= 2)


def test_complete_views_and_unrankable_rows():
    """A complete view targets slot N; a complete S_max-segment view is only in the MAE."""
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
    dist = np.array([[0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    out = evaluate_scores(scores, dist, target=[3, 4], n_segments=[3, 4], protocol="paper")
    assert out["HR@1"] == 1.0  # only row 0 is ranked: slot 3 = completion, lowest score
    assert out["MAE"] == pytest.approx((0 + 1) / 2)


def test_strict_mae_renormalises_over_real_outcomes():
    """Under strict, probability on impossible slots is dropped before the expectation."""
    dist = np.array([[0.25, 0.25, 0.0, 0.5]])  # N = 1: outcomes 0 and 1 only
    out = evaluate_scores(np.array([[0.0, 1.0, 2.0, 3.0]]), dist, [0], [1], "strict")
    assert out["MAE"] == 0  # renormalised [0.5, 0.5] -> expected 0.5 -> truncated 0
    out = evaluate_scores(np.array([[0.0, 1.0, 2.0, 3.0]]), dist, [0], [1], "paper")
    assert out["MAE"] == 1  # 0.25 + 1.5 = 1.75 -> 1


def test_heads_exit_distribution():
    """softmax(-logits) over the real outcomes; the expected slot is truncated."""
    logits = np.array([[0.0, 0.0, 5.0, 100.0]])
    mask = outcome_mask([2], 4)
    d = exit_distribution(logits, mask)
    assert d[0, 3] == 0 and d.sum() == pytest.approx(1)
    assert d[0, 0] == pytest.approx(1 / (2 + np.exp(-5)))
    assert expected_exit_slot(np.array([[0.0, 0.5, 0.5, 0.0]])).tolist() == [1]
