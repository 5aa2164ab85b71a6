"""Does a per-user propensity residual add signal to ``ItemPosition+prior|N``? A numpy check.

    .venv/bin/python -m training.propensity_tilt --data FILE --format kuairand --split temporal --seed 0

For every view the lookup (each video's exit counts smoothed toward the same-N profile with
``a`` pseudo-views) gives an expected watched fraction ``E = sum_j p_j min(j, N) / N``; the
view's residual is ``min(exit, N) / N - E``. A view that is itself a fitting row is left out
of its own video's and N's counts (leave-one-out), so its residual is not shrunk toward zero
by its own exit. A target row's user residual is ``R = sum of the residuals of its H most
recent strictly earlier views / (k + k0)`` (k = how many, k0 shrinks short histories to 0).
The tilt moves the lookup's exit distribution toward later slots for users who watch more
than the lookup expects: ``log p'_j = log p_j + beta R min(j, N) / N``, renormalised.

``beta`` and ``k0`` are chosen on the validation rows (lookup fitted on the training rows) by
strict NDCG@5; the test rows (lookup fitted on training + validation rows, as `segint
evaluate`) are then scored once, and the paired differences tilt - lookup are printed with
bootstrap standard errors over rows.
"""

from __future__ import annotations

import argparse
import itertools
import logging

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import choose_prior_strength
from segint.data import Filters, load_table
from segint.metrics import per_row_metrics
from segint.splits import TEST, TRAIN, VALID, assign_split, history_index

log = logging.getLogger("segint.propensity_tilt")
FloatArray = npt.NDArray[np.float64]
BETAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
K0S = (0.0, 1.0, 2.0, 4.0, 8.0)


def _onehot(exits: npt.NDArray[np.int64], s_max: int) -> FloatArray:
    out = np.zeros((len(exits), s_max))
    ok = exits < s_max
    out[np.flatnonzero(ok), exits[ok]] = 1.0
    return out


def lookup(table: pl.DataFrame, fit: npt.NDArray[np.bool_], a: float, s_max: int) -> FloatArray:
    """(n, S) ItemPosition+prior|N exit distribution of every row, fitted on the rows ``fit``;
    a fitting row is left out of its own video's and N's counts."""
    v = table["video_id"].to_numpy()
    n = table["n_segments"].to_numpy().clip(0, s_max)
    e = table["exit_slot"].to_numpy().astype(np.int64)
    _, vi = np.unique(v, return_inverse=True)
    own = _onehot(e, s_max) * fit[:, None]
    cv = np.zeros((vi.max() + 1, s_max))
    np.add.at(cv, vi[fit], own[fit])
    cn = np.zeros((s_max + 1, s_max))
    np.add.at(cn, n[fit], own[fit])
    glob = cn.sum(0) / max(cn.sum(), 1.0)
    c = cv[vi] - own  # (n, S)
    byn = cn[n] - own
    tot_n = byn.sum(1, keepdims=True)
    prof = np.where(tot_n > 0, byn / np.maximum(tot_n, 1.0), glob[None, :])
    out: FloatArray = (c + a * prof) / (c.sum(1, keepdims=True) + a)
    return out


def fractions(table: pl.DataFrame, s_max: int) -> tuple[FloatArray, FloatArray]:
    """(n,) observed watched fraction and (n, S) watched fraction of ending in each slot."""
    n = table["n_segments"].to_numpy().astype(np.float64)
    e = table["exit_slot"].to_numpy().astype(np.float64)
    obs = np.minimum(e, n) / n
    j = np.arange(s_max, dtype=np.float64)[None, :]
    frac = np.minimum(j, n[:, None]) / n[:, None]
    return obs, frac


def user_residual(resid: FloatArray, hist: npt.NDArray[np.int64], k0: float) -> FloatArray:
    """(rows,) shrunk mean residual of each row's history views (hist: (rows, H), -1 pad)."""
    m = hist >= 0
    r = np.where(m, resid[np.maximum(hist, 0)], 0.0)
    k = m.sum(1)
    out: FloatArray = r.sum(1) / np.maximum(k + k0, 1e-9)
    return out


def tilt(
    dist: FloatArray, frac: FloatArray, n: npt.NDArray[np.int64], r: FloatArray, beta: float
) -> FloatArray:
    """Exit distributions tilted by ``beta * r`` toward later slots, over the N + 1 outcomes."""
    s = dist.shape[1]
    real = np.arange(s)[None, :] <= n[:, None]
    logp = np.log(np.maximum(dist, 1e-12)) + beta * r[:, None] * frac
    w = np.where(real, np.exp(logp - logp.max(1, keepdims=True)), 0.0)
    out: FloatArray = w / w.sum(1, keepdims=True)
    return out


def row_metrics(table: pl.DataFrame, dist: FloatArray, seed: int) -> dict[str, FloatArray]:
    return per_row_metrics(
        1.0 - dist, dist, table["exit_slot"], table["n_segments"], "strict", seed
    )


def paired(a: dict[str, FloatArray], b: dict[str, FloatArray], rng: np.random.Generator) -> str:
    parts = []
    for name in ("NDCG@5", "NDCG@10", "HR@1", "HR@5", "MAE"):
        d = a[name] - b[name]
        d = d[~np.isnan(d)]
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(1000)]
        parts.append(f"{name} {d.mean():+.4f} ± {np.std(boot):.4f}")
    return "; ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--format", default="kuairand")
    p.add_argument("--split", default="temporal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-len", type=int, default=20)
    p.add_argument("--s-max", type=int, default=40)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s_max = args.s_max
    table = load_table(args.data, args.format, Filters(s_max=s_max))
    split = assign_split(table, args.split, args.seed)
    hist = history_index(table, args.history_len)
    obs, frac = fractions(table, s_max)
    n = table["n_segments"].to_numpy().astype(np.int64)
    a, _ = choose_prior_strength(
        table.filter(pl.Series(split == TRAIN)),
        table.filter(pl.Series(split == VALID)),
        s_max,
        args.seed,
    )
    log.info(f"a = {a} (validation rows, strict NDCG@5)")
    results = {}
    for stage, fit, rows in (
        ("valid", split == TRAIN, split == VALID),
        ("test", (split == TRAIN) | (split == VALID), split == TEST),
    ):
        dist_all = lookup(table, fit, a, s_max)
        resid = obs - (dist_all * frac).sum(1)
        idx = np.flatnonzero(rows)
        sub = table[idx]
        # a target row is never a fitting row here, so its own distribution is the plain lookup
        base = row_metrics(sub, dist_all[idx], args.seed)
        results[stage] = (sub, idx, dist_all, resid, base)
    sub, idx, dist_all, resid, base = results["valid"]
    grid = {}
    for beta, k0 in itertools.product(BETAS, K0S):
        r = user_residual(resid, hist[idx], k0)
        m = row_metrics(sub, tilt(dist_all[idx], frac[idx], n[idx], r, beta), args.seed)
        grid[(beta, k0)] = float(np.nanmean(m["NDCG@5"]))
    best = max(grid, key=lambda key: (grid[key], -key[0], key[1]))
    log.info("validation NDCG@5 by (beta, k0):")
    for beta in BETAS:
        log.info(f"  beta {beta:4}: " + "  ".join(f"k0 {k0}: {grid[(beta, k0)]:.4f}" for k0 in K0S))
    log.info(f"chosen on validation rows: beta={best[0]}, k0={best[1]}")
    rng = np.random.default_rng(0)
    for stage in ("valid", "test"):
        sub, idx, dist_all, resid, base = results[stage]
        r = user_residual(resid, hist[idx], best[1])
        m = row_metrics(sub, tilt(dist_all[idx], frac[idx], n[idx], r, best[0]), args.seed)
        has = (hist[idx] >= 0).any(1)
        log.info(
            f"{stage} ({len(idx)} rows, {int(has.sum())} with history): tilt - lookup: "
            + paired(m, base, rng)
        )
        long = (hist[idx] >= 0).sum(1) >= 5
        mm = {k: v[long] for k, v in m.items()}
        bb = {k: v[long] for k, v in base.items()}
        log.info(f"  {int(long.sum())} rows with >= 5 history views: " + paired(mm, bb, rng))


if __name__ == "__main__":
    main()
