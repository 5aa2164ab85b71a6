"""CTR metrics and the significance test of the SegRec table (reference section 7.5).

* ``AUC``: ROC AUC as the Mann-Whitney statistic, ties counted as half (average ranks);
  NaN when the rows hold one class only.
* ``F1``: F1 of the positive class at threshold 0.5 (``p >= 0.5`` predicts positive).
* ``LogLoss``: mean binary cross-entropy with predictions clipped to ``[1e-7, 1 - 1e-7]``.
* `welch_p`: two-sided Welch t-test (unequal variances) over per-seed values.
* `paired_bootstrap`: difference of two predictions' AUC / LogLoss on the same rows, with a
  bootstrap standard error over rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

METRICS = ("AUC", "F1", "LogLoss")
HIGHER_IS_BETTER = {"AUC": True, "F1": True, "LogLoss": False}
CLIP = 1e-7


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Probability that a random positive scores above a random negative (ties: 1/2)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)  # average ranks for ties, 1-based
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(labels: npt.ArrayLike, probs: npt.ArrayLike, threshold: float = 0.5) -> float:
    """F1 of the positive class; 0 when there are no true positives."""
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(probs, dtype=np.float64) >= threshold
    tp = int(np.sum(pred & y))
    denom = int(pred.sum()) + int(y.sum())
    return 2.0 * tp / denom if denom and tp else 0.0


def log_loss(labels: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), CLIP, 1 - CLIP)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ctr_metrics(labels: npt.ArrayLike, probs: npt.ArrayLike) -> dict[str, float]:
    """``{"AUC", "F1", "LogLoss"}`` of predicted probabilities."""
    return {"AUC": auc(labels, probs), "F1": f1(labels, probs), "LogLoss": log_loss(labels, probs)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test of ``a`` vs ``b``; NaN with < 2 values per side."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    p = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False).pvalue
    return float(p) if p is not None and math.isfinite(float(p)) else float("nan")


def paired_bootstrap(
    labels: npt.ArrayLike,
    probs_a: npt.ArrayLike,
    probs_b: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """``{metric: (a - b, bootstrap standard error)}`` for AUC and LogLoss on the same rows.

    ``probs_a`` / ``probs_b`` are (n,) or (k, n): k paired runs (e.g. seeds) on the same n
    rows; the difference is the mean over the k pairs. Rows are resampled with replacement
    ``n_boot`` times, the same resample for every run, so the spread is that of the paired
    difference, seeds included.
    """
    y = np.asarray(labels, dtype=np.float64)
    a = np.atleast_2d(np.asarray(probs_a, dtype=np.float64))  # (k, n)
    b = np.atleast_2d(np.asarray(probs_b, dtype=np.float64))
    if a.shape != b.shape or a.shape[1] != len(y):
        raise ValueError(f"need paired predictions of {len(y)} rows, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    fns = {"AUC": auc, "LogLoss": log_loss}

    def diff(idx: npt.NDArray[np.int64], metric: str) -> float:
        fn = fns[metric]
        return float(
            np.mean(
                [fn(y[idx], pa[idx]) - fn(y[idx], pb[idx]) for pa, pb in zip(a, b, strict=True)]
            )
        )

    every = np.arange(len(y))
    draws = {m: [diff(rng.integers(0, len(y), len(y)), m) for _ in range(n_boot)] for m in fns}
    return {m: (diff(every, m), float(np.nanstd(draws[m], ddof=1))) for m in fns}
