"""Does request context (hour of day, tab, is_rand) add signal to ``ItemPosition+prior|N``?

    .venv/bin/python -m training.context_check --data LOG.csv --split temporal --seed 0

Offline only (the service takes no context). For one context variable c at a time, the
same-N exit profile becomes a same-(N, c) profile: the (N, c) exit counts smoothed toward
the same-N profile with ``b`` pseudo-views; each video's counts are then smoothed toward it
with ``a`` pseudo-views as before (``a`` chosen on validation for the plain lookup). ``b``
(including "off") is chosen on the validation rows (fitted on training rows) by strict
NDCG@5; the test rows (fitted on training + validation rows) are scored once and compared,
paired, with the plain lookup. The context columns are read from the raw KuaiRand log and
joined to the prepared rows by (user, video, time).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import choose_prior_strength
from segint.data import Filters, load_table
from segint.splits import TEST, TRAIN, VALID, assign_split
from training.propensity_tilt import paired, row_metrics

log = logging.getLogger("segint.context_check")
FloatArray = npt.NDArray[np.float64]
B_GRID = (None, 3000.0, 1000.0, 300.0, 100.0, 30.0, 10.0)  # None: no context


def with_context(table: pl.DataFrame, path: str) -> pl.DataFrame:
    raw = pl.read_csv(path, columns=["user_id", "video_id", "time_ms", "hourmin", "tab", "is_rand"])
    raw = raw.unique(subset=["user_id", "video_id", "time_ms"], keep="first")
    out = table.join(raw, on=["user_id", "video_id", "time_ms"], how="left", maintain_order="left")
    return out.with_columns(hour_part=(pl.col("hourmin") // 600).cast(pl.Int64))  # 4 parts of day


def lookup_ctx(
    table: pl.DataFrame, fit: npt.NDArray[np.bool_], rows: npt.NDArray[np.bool_], a: float,
    ctx: str | None, b: float | None, s_max: int,
) -> FloatArray:  # fmt: skip
    """(rows, S) ItemPosition+prior|N with a same-(N, context) base profile."""
    v = table["video_id"].to_numpy()
    n = table["n_segments"].to_numpy().clip(0, s_max)
    e = table["exit_slot"].to_numpy().astype(np.int64)
    ok = fit & (e < s_max)
    _, vi = np.unique(v, return_inverse=True)
    cv = np.zeros((vi.max() + 1, s_max))
    np.add.at(cv, (vi[ok], e[ok]), 1.0)
    cn = np.zeros((s_max + 1, s_max))
    np.add.at(cn, (n[ok], e[ok]), 1.0)
    glob = cn.sum(0) / cn.sum()
    prof_n = np.where(
        cn.sum(1, keepdims=True) > 0, cn / np.maximum(cn.sum(1, keepdims=True), 1), glob
    )
    base = prof_n[n[rows]]
    if ctx is not None and b is not None:
        c = table[ctx].fill_null(-1).to_numpy().astype(np.int64)
        _, ci = np.unique(c, return_inverse=True)
        cnc = np.zeros((s_max + 1, ci.max() + 1, s_max))
        np.add.at(cnc, (n[ok], ci[ok], e[ok]), 1.0)
        k = cnc[n[rows], ci[rows]]  # (rows, S)
        base = (k + b * base) / (k.sum(1, keepdims=True) + b)
    c_v = cv[vi[rows]]
    out: FloatArray = (c_v + a * base) / (c_v.sum(1, keepdims=True) + a)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="temporal")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s_max = 40
    table = with_context(load_table(args.data, "kuairand", Filters(s_max=s_max)), args.data)
    split = assign_split(table, args.split, args.seed)
    a, _ = choose_prior_strength(
        table.filter(pl.Series(split == TRAIN)), table.filter(pl.Series(split == VALID)), s_max
    )
    rng = np.random.default_rng(0)
    for ctx in ("hour_part", "tab", "is_rand"):
        scores = {}
        valid = split == VALID
        for b in B_GRID:
            d = lookup_ctx(table, split == TRAIN, valid, a, ctx, b, s_max)
            scores[b] = float(
                np.nanmean(row_metrics(table.filter(pl.Series(valid)), d, args.seed)["NDCG@5"])
            )
        best = max(B_GRID, key=lambda b: (scores[b], b is None))
        log.info("%s: validation NDCG@5 %s; chosen b = %s", ctx,
                 ", ".join(f"{b}: {v:.4f}" for b, v in scores.items()), best)  # fmt: skip
        test = split == TEST
        fit = (split == TRAIN) | valid
        sub = table.filter(pl.Series(test))
        plain = row_metrics(sub, lookup_ctx(table, fit, test, a, None, None, s_max), args.seed)
        with_c = row_metrics(sub, lookup_ctx(table, fit, test, a, ctx, best, s_max), args.seed)
        log.info(
            "  test (%d rows), with %s - plain: %s", test.sum(), ctx, paired(with_c, plain, rng)
        )


if __name__ == "__main__":
    main()
