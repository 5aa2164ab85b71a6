"""Skip-prediction metrics (spec section 3): HR@K, NDCG@K of the exit slot, watch-time MAE
and XAUC.

Slots are ranked ascending by interest score (lowest interest = most likely exit). Two
protocols are always reported:

* ``paper``: rank all ``S_max`` slots, padding included (how the paper's tables were made;
  Random comes out at K/S_max);
* ``strict``: rank only the ``N + 1`` real outcomes of each view.

Ties are broken by a seeded random permutation; metrics are per-row means. Rows whose exit
slot is ``S_max`` (complete views of ``S_max``-segment videos) have no slot and are excluded
from the ranking metrics, as in the reference; MAE uses every row.

Watch time (`segint.watchtime`): ``MAE`` is the error in slots of the served point estimate,
the median of the exit distribution; ``MAE_mean`` that of the expected slot, truncated (the
reference's rule, this project's ``MAE`` before the median was served). ``XAUC`` is the
fraction of row pairs with different observed watch times (play time capped at the duration)
whose predicted watch times (the expected watch time in ms, continuous, so that it can order
rows) are in the same order, a tied prediction counting 1/2; computed exactly in
O(n log² n) by `xauc`. Under ``strict`` both watch-time estimates come from the distribution
renormalised over the real outcomes.

A method whose scores are NaN (a point estimate with no ranking of slots, `learned.base`)
gets NaN ranking metrics and its MAE and XAUC as usual.

`per_row_metrics` gives each row's values (NaN in the ranking metrics where a row is not
ranked); `evaluate_scores` averages them, and `segint compare` bootstraps them, so both use
the same ranks and tie-breaking.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segint.heads import expected_exit_slot, expected_watch_ms, outcome_mask
from segint.watchtime import median_exit_slot

PROTOCOLS = ("paper", "strict")
HR_KS = (1, 5, 10)
NDCG_KS = (5, 10)
RANK_METRICS = [f"HR@{k}" for k in HR_KS] + [f"NDCG@{k}" for k in NDCG_KS]
ROW_METRICS = [*RANK_METRICS, "MAE", "MAE_mean"]  # per-row values; means are the metrics
METRIC_NAMES = [*ROW_METRICS, "XAUC"]


def eligible_slots(n_segments: npt.ArrayLike, s_max: int, protocol: str) -> npt.NDArray[np.bool_]:
    """(n, s_max) mask of the slots a protocol ranks."""
    n = np.asarray(n_segments)
    if protocol == "paper":
        return np.ones((len(n), s_max), dtype=bool)
    if protocol == "strict":
        return outcome_mask(n, s_max)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def exit_ranks(
    scores: npt.ArrayLike,
    target: npt.ArrayLike,
    eligible: npt.NDArray[np.bool_],
    seed: int = 0,
) -> npt.NDArray[np.int64]:
    """1-based rank of the target slot among eligible slots, ascending by score.

    Ties are broken by a random permutation of the slots, drawn per row from ``seed``.

    Args:
        scores: (n, S) interest scores, higher = more interest.
        target: (n,) exit slot, each ``< S`` and eligible.
        eligible: (n, S) slots that take part in the ranking.
        seed: seed of the tie-breaking permutation.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(target, dtype=np.int64)
    rows = np.arange(len(t))
    if np.any(t >= s.shape[1]) or not eligible[rows, t].all():
        raise ValueError("every target must be an eligible slot")
    tie_key = np.random.default_rng(seed).random(s.shape)
    st = s[rows, t][:, None]
    kt = tie_key[rows, t][:, None]
    ahead = (s < st) | ((s == st) & (tie_key < kt))
    ranks: npt.NDArray[np.int64] = 1 + np.sum(ahead & eligible, axis=1)
    return ranks


def ranking_metrics(ranks: npt.NDArray[np.int64]) -> dict[str, float]:
    """HR@K and NDCG@K (single relevant item: ``1/log2(rank + 1)`` within the top K)."""
    out: dict[str, float] = {}
    if len(ranks) == 0:
        return {
            **{f"HR@{k}": float("nan") for k in HR_KS},
            **{f"NDCG@{k}": float("nan") for k in NDCG_KS},
        }
    for k in HR_KS:
        out[f"HR@{k}"] = float(np.mean(ranks <= k))
    for k in NDCG_KS:
        out[f"NDCG@{k}"] = float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))
    return out


def xauc(truth: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """Pairwise watch-time ordering accuracy, exact.

    Over pairs ``i, j`` with ``truth_i < truth_j``: the share with ``pred_i < pred_j``, a tie
    in ``pred`` counting 1/2 (pairs tied in ``truth`` are left out). NaN with no such pair.
    Rows sorted by (truth ascending, pred descending) make every strictly increasing pair of
    predictions a pair with ``truth_i < truth_j``; those are counted by a bottom-up merge,
    one vectorised pass per doubling of the block width.
    """
    y = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    n = len(y)
    if n < 2:
        return float("nan")
    _, q = np.unique(p, return_inverse=True)
    _, gy = np.unique(y, return_inverse=True)
    order = np.lexsort((-q, gy))
    q = q[order].astype(np.int64)
    increasing = _count_increasing_pairs(q)

    def tied_pairs(keys: npt.NDArray[np.int64]) -> float:
        counts = np.unique(keys, return_counts=True)[1].astype(np.float64)
        return float(np.sum(counts * (counts - 1) / 2))

    ties_y = tied_pairs(gy)
    ties_p_diff_y = tied_pairs(q) - tied_pairs(gy[order] * (int(q.max()) + 1) + q)
    pairs = n * (n - 1) / 2 - ties_y
    if pairs <= 0:
        return float("nan")
    return float((increasing + 0.5 * ties_p_diff_y) / pairs)


def _count_increasing_pairs(q: npt.NDArray[np.int64]) -> float:
    """``#{a < b : q_a < q_b}`` for a sequence of non-negative ints.

    Each pair is counted at the one block width ``w`` where ``a`` lies in the left half and
    ``b`` in the right half of the same ``2w`` block: a sorted array of the left halves' keys
    ``block * M + q`` answers every right element with two binary searches.
    """
    n = len(q)
    m = int(q.max()) + 1 if n else 1
    idx = np.arange(n)
    total = 0
    w = 1
    while w < n:
        block = idx // (2 * w)
        right = (idx % (2 * w)) >= w
        keys = np.sort(block[~right] * m + q[~right])
        rb = block[right] * m
        total += int(np.sum(np.searchsorted(keys, rb + q[right]) - np.searchsorted(keys, rb)))
        w *= 2
    return float(total)


def per_row_metrics(
    scores: npt.ArrayLike,
    exit_dist: npt.ArrayLike,
    target: npt.ArrayLike,
    n_segments: npt.ArrayLike,
    protocol: str,
    seed: int = 0,
) -> dict[str, npt.NDArray[np.float64]]:
    """Each row's HR@K/NDCG@K (NaN where the exit has no slot), ``MAE`` and ``MAE_mean``.

    Args as for `evaluate_scores`. Ranks are drawn exactly as `evaluate_scores` draws them:
    the tie-breaking permutation is seeded per call over the ranked rows.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(target, dtype=np.int64)
    eligible = eligible_slots(n_segments, s.shape[1], protocol)
    # A row of NaN scores ranks nothing (a point-estimate-only method): NaN ranking metrics.
    ranked = (t < s.shape[1]) & ~np.isnan(s).all(axis=1)
    ranks = exit_ranks(s[ranked], t[ranked], eligible[ranked], seed=seed)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for k in HR_KS:
        v = np.full(len(t), np.nan)
        v[ranked] = ranks <= k
        out[f"HR@{k}"] = v
    for k in NDCG_KS:
        v = np.full(len(t), np.nan)
        v[ranked] = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
        out[f"NDCG@{k}"] = v
    dist = renormalised(exit_dist, eligible)
    out["MAE"] = np.abs(median_exit_slot(dist) - t).astype(np.float64)
    out["MAE_mean"] = np.abs(expected_exit_slot(dist) - t).astype(np.float64)
    return out


def renormalised(
    exit_dist: npt.ArrayLike, eligible: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """The exit distribution restricted to the eligible slots, rows summing to 1."""
    dist = np.where(eligible, np.asarray(exit_dist, dtype=np.float64), 0.0)
    out: npt.NDArray[np.float64] = dist / np.maximum(dist.sum(axis=1, keepdims=True), 1e-300)
    return out


def predicted_watch_ms(
    exit_dist: npt.ArrayLike, n_segments: npt.ArrayLike, duration_ms: npt.ArrayLike, protocol: str
) -> npt.NDArray[np.float64]:
    """The expected watch time (ms) XAUC orders rows by, from the protocol's distribution."""
    d = np.asarray(exit_dist, dtype=np.float64)
    dist = renormalised(d, eligible_slots(n_segments, d.shape[1], protocol))
    return expected_watch_ms(dist, duration_ms)


def evaluate_scores(
    scores: npt.ArrayLike,
    exit_dist: npt.ArrayLike,
    target: npt.ArrayLike,
    n_segments: npt.ArrayLike,
    protocol: str,
    seed: int = 0,
    duration_ms: npt.ArrayLike | None = None,
    watch_ms: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """All metrics of one method on one set of rows under one protocol.

    Args:
        scores: (n, S) interest scores used for ranking.
        exit_dist: (n, S) the method's exit distribution over slots (rows sum to 1); under
            ``strict`` it is renormalised over the real outcomes before the MAE.
        target: (n,) exit slots ``V``.
        n_segments: (n,) segment counts ``N``.
        protocol: ``paper`` or ``strict``.
        seed: tie-breaking seed.
        duration_ms: (n,) video durations, for XAUC (NaN without them).
        watch_ms: (n,) observed watch times (`segint.watchtime.true_watch_ms`), for XAUC.
    """
    rows = per_row_metrics(scores, exit_dist, target, n_segments, protocol, seed)
    out: dict[str, float] = {}
    for name, values in rows.items():
        finite = values[~np.isnan(values)]
        out[name] = float(finite.mean()) if len(finite) else float("nan")
    out["XAUC"] = float("nan")
    if duration_ms is not None and watch_ms is not None and len(np.asarray(target)):
        pred = predicted_watch_ms(exit_dist, n_segments, duration_ms, protocol)
        out["XAUC"] = xauc(watch_ms, pred)
    return out
