"""HR/NDCG/MAE against hand-computed cases, including ties and complete views."""

from __future__ import annotations

import numpy as np
import pytest

from segint.heads import exit_distribution, expected_exit_slot, outcome_mask
from segint.metrics import (
    eligible_slots,
    evaluate_scores,
    exit_ranks,
    per_row_metrics,
    ranking_metrics,
    xauc,
)


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
    assert out["MAE_mean"] == pytest.approx((0 + 1) / 2)


def test_strict_mae_renormalises_over_real_outcomes():
    """Under strict, probability on impossible slots is dropped before the expectation."""
    dist = np.array([[0.25, 0.25, 0.0, 0.5]])  # N = 1: outcomes 0 and 1 only
    out = evaluate_scores(np.array([[0.0, 1.0, 2.0, 3.0]]), dist, [0], [1], "strict")
    assert out["MAE_mean"] == 0  # renormalised [0.5, 0.5] -> expected 0.5 -> truncated 0
    assert out["MAE"] == 0  # median: cumulative 0.5 is reached at slot 0
    out = evaluate_scores(np.array([[0.0, 1.0, 2.0, 3.0]]), dist, [0], [1], "paper")
    assert out["MAE_mean"] == 1  # 0.25 + 1.5 = 1.75 -> 1
    assert out["MAE"] == 1  # cumulative 0.25, 0.5: median slot 1


def test_mae_is_the_median_slot_and_mae_mean_the_expected_slot():
    """A bimodal distribution: median and truncated mean differ, and each MAE uses its own."""
    dist = np.array([[0.6, 0.0, 0.0, 0.0, 0.4]])  # N = 4: median 0, mean 1.6 -> 1
    scores = np.zeros((1, 5))
    out = evaluate_scores(scores, dist, [4], [4], "strict")
    assert out["MAE"] == 4 and out["MAE_mean"] == 3
    assert np.isnan(out["XAUC"])  # no watch times given


def test_xauc_by_hand():
    """Truth 1 < 2 < 3 (+ a tie): of the 5 pairs with different truths, predictions order
    (1, 2) right, (1, 3) right, (2, 3) wrong, and the tie in prediction counts 1/2."""
    truth = [1.0, 2.0, 3.0, 3.0]
    pred = [10.0, 30.0, 20.0, 30.0]
    # pairs (i<j by truth): (0,1) ok, (0,2) ok, (0,3) ok, (1,2) wrong, (1,3) tie 1/2
    assert xauc(truth, pred) == pytest.approx(3.5 / 5)
    assert xauc([1.0, 2.0], [5.0, 4.0]) == 0.0
    assert np.isnan(xauc([1.0, 1.0], [1.0, 2.0]))


def test_xauc_matches_the_quadratic_count():
    """The O(n log^2 n) count equals counting every pair, with many ties on both sides."""
    rng = np.random.default_rng(3)
    for n in (3, 17, 200):
        y = rng.integers(0, 6, n).astype(float)
        p = rng.integers(0, 5, n).astype(float)
        yi, yj = np.meshgrid(y, y, indexing="ij")
        pi, pj = np.meshgrid(p, p, indexing="ij")
        pairs = yi < yj
        want = ((pi < pj) + 0.5 * (pi == pj))[pairs].sum() / pairs.sum()
        assert xauc(y, p) == pytest.approx(want, abs=1e-12)


def test_evaluate_scores_xauc_orders_by_expected_watch_time():
    """XAUC of evaluate_scores: rows ordered by the expected watch time of the exit
    distribution, against the observed watch times."""
    dist = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # N = 2 each
    dur = [10000, 10000, 10000]  # expected watch 2.5 s, 7.5 s, 10 s
    out = evaluate_scores(dist, dist, [0, 1, 2], [2, 2, 2], "strict", duration_ms=dur,
                          watch_ms=[1000.0, 6000.0, 10000.0])  # fmt: skip
    assert out["XAUC"] == 1.0
    out = evaluate_scores(dist, dist, [0, 1, 2], [2, 2, 2], "strict", duration_ms=dur,
                          watch_ms=[10000.0, 6000.0, 1000.0])  # fmt: skip
    assert out["XAUC"] == 0.0


def test_per_row_values_average_to_the_metrics():
    """per_row_metrics' NaN-aware means are evaluate_scores' numbers (same ranks)."""
    rng = np.random.default_rng(0)
    scores = rng.random((50, 6))
    dist = rng.dirichlet(np.ones(6), 50)
    n = rng.integers(1, 7, 50)
    target = np.minimum(rng.integers(0, 7, 50), n)
    for protocol in ("paper", "strict"):
        rows = per_row_metrics(scores, dist, target, n, protocol, seed=4)
        out = evaluate_scores(scores, dist, target, n, protocol, seed=4)
        for name, values in rows.items():
            assert np.nanmean(values) == pytest.approx(out[name], abs=1e-12)
        assert np.isnan(rows["HR@1"][target == 6]).all()


def test_heads_exit_distribution():
    """softmax(-logits) over the real outcomes; the expected slot is truncated."""
    logits = np.array([[0.0, 0.0, 5.0, 100.0]])
    mask = outcome_mask([2], 4)
    d = exit_distribution(logits, mask)
    assert d[0, 3] == 0 and d.sum() == pytest.approx(1)
    assert d[0, 0] == pytest.approx(1 / (2 + np.exp(-5)))
    assert expected_exit_slot(np.array([[0.0, 0.5, 0.5, 0.0]])).tolist() == [1]
