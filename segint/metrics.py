"""Skip-prediction metrics (spec section 3): HR@K, NDCG@K of the exit slot, watch-time MAE.

Slots are ranked ascending by interest score (lowest interest = most likely exit). Two
protocols are always reported:

* ``paper``: rank all ``S_max`` slots, padding included (how the paper's tables were made;
  Random comes out at K/S_max);
* ``strict``: rank only the ``N + 1`` real outcomes of each view.

Ties are broken by a seeded random permutation; metrics are per-row means. Rows whose exit
slot is ``S_max`` (complete views of ``S_max``-segment videos) have no slot and are excluded
from the ranking metrics, as in the reference; MAE uses every row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segint.heads import expected_exit_slot, outcome_mask

PROTOCOLS = ("paper", "strict")
HR_KS = (1, 5, 10)
NDCG_KS = (5, 10)
METRIC_NAMES = [f"HR@{k}" for k in HR_KS] + [f"NDCG@{k}" for k in NDCG_KS] + ["MAE"]


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


def evaluate_scores(
    scores: npt.ArrayLike,
    exit_dist: npt.ArrayLike,
    target: npt.ArrayLike,
    n_segments: npt.ArrayLike,
    protocol: str,
    seed: int = 0,
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
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(target, dtype=np.int64)
    eligible = eligible_slots(n_segments, s.shape[1], protocol)
    ranked = t < s.shape[1]
    ranks = exit_ranks(s[ranked], t[ranked], eligible[ranked], seed=seed)
    dist = np.where(eligible, np.asarray(exit_dist, dtype=np.float64), 0.0)
    dist = dist / np.maximum(dist.sum(axis=1, keepdims=True), 1e-300)
    out = ranking_metrics(ranks)
    out["MAE"] = float(np.mean(np.abs(expected_exit_slot(dist) - t))) if len(t) else float("nan")
    return out
