"""Paired comparison of two methods on the same rows, with bootstrap standard errors.

Input: one or more predictions files (`segint.predictions`), e.g. the test rows of several
splits and seeds. For each file the per-row metric values of both methods are recomputed with
`segint.metrics.per_row_metrics` (the file's tie-breaking seed, the same rows: the means are
exactly the numbers `segint evaluate` reported), and the difference ``A - B`` is:

* for HR@K, NDCG@K (rows whose exit has a slot), MAE and MAE_mean (all rows): the mean of the
  per-row differences over the rows of all files pooled;
* for XAUC (a pairwise metric; strict protocol only, where the watch-time estimates come from
  the real outcomes): the row-weighted mean over files of each file's XAUC difference, so a
  pair compares two rows of the same file.

Standard errors come from a stratified bootstrap: each replicate draws, within every file,
as many rows as it has with replacement, and recomputes the pooled difference; the SE is the
replicates' standard deviation. Files holding the same rows (same user, video and time in the
same order: e.g. the temporal split's test rows scored by models of several seeds) share one
draw per replicate, since their row-level noise is the same; drawing them independently would
understate the SE. The verdict is ``win`` when ``A`` is better than ``B`` by
more than ``2 SE`` (higher HR/NDCG/XAUC, lower MAE), ``loss`` when worse by more, else
``tie``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
from tqdm import tqdm

from segint.metrics import PROTOCOLS, ROW_METRICS, per_row_metrics, predicted_watch_ms, xauc
from segint.predictions import method_arrays

LOWER_IS_BETTER = {"MAE", "MAE_mean"}
Z = 2.0  # a difference inside Z standard errors is a tie


@dataclass(frozen=True)
class Row:
    """One line of a comparison."""

    metric: str
    protocol: str
    a: float  # A's pooled value
    b: float  # B's pooled value
    diff: float  # A - B
    se: float  # bootstrap standard error of the difference

    @property
    def verdict(self) -> str:
        if not (np.isfinite(self.diff) and np.isfinite(self.se)):
            return "-"
        better = -self.diff if self.metric in LOWER_IS_BETTER else self.diff
        if better > Z * self.se:
            return "win"
        if better < -Z * self.se:
            return "loss"
        return "tie"


@dataclass
class _File:
    values: npt.NDArray[np.float64]  # (n, M, K): per-row metric values of A, B1, B2, ...
    truth: npt.NDArray[np.float64]  # (n,) observed watch ms
    pred: npt.NDArray[np.float64]  # (n, M) expected watch ms of A, B1, ... (strict)
    rows_key: int  # hash of the (user, video, time) sequence: equal = the same rows


def _prepare(frame: pl.DataFrame, path: str | Path, methods: list[str]) -> _File:
    target = frame["exit_slot"].to_numpy()
    n_seg = frame["n_segments"].to_numpy()
    dur = frame["duration_ms"].to_numpy()
    seed = int(frame["tie_seed"][0])
    cols, preds = [], []
    for method in methods:
        scores, dist = method_arrays(frame, method, path)
        per = [
            per_row_metrics(scores, dist, target, n_seg, protocol, seed) for protocol in PROTOCOLS
        ]
        cols.append(np.stack([p[m] for p in per for m in ROW_METRICS], axis=1))
        preds.append(predicted_watch_ms(dist, n_seg, dur, "strict"))
    key = hash(
        frame.select(["user_id", "video_id", "time_ms"]).hash_rows(seed=0).to_numpy().tobytes()
    )
    return _File(np.stack(cols, axis=1), frame["watch_ms"].to_numpy(), np.stack(preds, axis=1), key)


def _pooled_means(files: list[_File], idx: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.float64]:
    """(M, K) NaN-aware means of each method's per-row values over the selected rows."""
    total = np.zeros(files[0].values.shape[1:])
    count = np.zeros_like(total)
    for f, i in zip(files, idx, strict=True):
        v = f.values[i]
        ok = ~np.isnan(v)
        total += np.where(ok, v, 0.0).sum(axis=0)
        count += ok.sum(axis=0)
    with np.errstate(invalid="ignore"):
        out: npt.NDArray[np.float64] = total / count
    return out


def _pooled_xauc(files: list[_File], idx: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.float64]:
    """(M,) row-weighted mean over files of each method's XAUC (files with a finite one)."""
    n_methods = files[0].pred.shape[1]
    vals = np.array(
        [
            [xauc(f.truth[i], f.pred[i, m]) for m in range(n_methods)]
            for f, i in zip(files, idx, strict=True)
        ]
    )
    # a file too small for a pair (NaN XAUC) carries no weight
    weights = np.where(np.isfinite(vals), np.array([len(i) for i in idx], np.float64)[:, None], 0.0)
    with np.errstate(invalid="ignore"):
        out: npt.NDArray[np.float64] = (np.where(weights > 0, vals, 0.0) * weights).sum(
            axis=0
        ) / weights.sum(axis=0)
    return out


def compare_many(
    frames: list[tuple[str | Path, pl.DataFrame]],
    a: str,
    others: list[str],
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[Row]]:
    """Paired differences ``a - b`` for every ``b`` of ``others`` over the pooled rows of
    ``frames`` ((path, table) pairs); every difference uses the same bootstrap draws.

    ``compare_many(frames, a, [b])[b]`` is ``compare(frames, a, b)``, value for value.
    """
    methods = [a, *others]
    files = [_prepare(frame, path, methods) for path, frame in frames]
    full = [np.arange(len(f.truth)) for f in files]
    means = _pooled_means(files, full)
    xa = _pooled_xauc(files, full)
    rng = np.random.default_rng(seed)
    boot_diff = np.empty((n_boot, len(others), means.shape[1]))
    boot_xauc = np.empty((n_boot, len(others)))
    for r in tqdm(range(n_boot), desc="bootstrap", disable=not progress, leave=False):
        draws: dict[int, npt.NDArray[np.int64]] = {}
        for f in files:  # one draw per distinct row set
            if f.rows_key not in draws:
                draws[f.rows_key] = rng.integers(0, len(f.truth), len(f.truth))
        idx = [draws[f.rows_key] for f in files]
        m = _pooled_means(files, idx)
        boot_diff[r] = m[0] - m[1:]
        x = _pooled_xauc(files, idx)
        boot_xauc[r] = x[0] - x[1:]
    n_k = means.shape[1]
    se = boot_diff.std(axis=0, ddof=1) if n_boot > 1 else np.full((len(others), n_k), np.nan)
    x_se = boot_xauc.std(axis=0, ddof=1) if n_boot > 1 else np.full(len(others), np.nan)
    names = [(p, m) for p in PROTOCOLS for m in ROW_METRICS]
    out: dict[str, list[Row]] = {}
    for j, b in enumerate(others, start=1):
        rows = [
            Row(metric, protocol, means[0, k], means[j, k], means[0, k] - means[j, k], se[j - 1, k])
            for k, (protocol, metric) in enumerate(names)
        ]
        rows.append(Row("XAUC", "strict", xa[0], xa[j], xa[0] - xa[j], float(x_se[j - 1])))
        out[b] = rows
    return out


def compare(
    frames: list[tuple[str | Path, pl.DataFrame]],
    a: str,
    b: str,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[Row]:
    """Paired differences ``a - b`` over the pooled rows of ``frames`` ((path, table) pairs)."""
    return compare_many(frames, a, [b], n_boot, seed, progress)[b]


def format_rows(rows: list[Row], a: str, b: str, n_rows: int, n_files: int, n_boot: int) -> str:
    """Plain-text table of a comparison."""
    lines = [
        f"{a} - {b}: {n_rows:,} rows in {n_files} file(s), {n_boot} stratified bootstrap "
        f"replicates; verdict at {Z:g} SE",
        f"{'protocol':<8} {'metric':<9}{'A':>9}{'B':>9}{'A-B':>10}{'SE':>9}{'z':>7}  verdict",
    ]
    for r in rows:
        z = r.diff / r.se if r.se > 0 else float("nan")
        lines.append(
            f"{r.protocol:<8} {r.metric:<9}{r.a:>9.4f}{r.b:>9.4f}{r.diff:>+10.4f}{r.se:>9.4f}"
            f"{z:>7.1f}  {r.verdict}"
        )
    return "\n".join(lines)
