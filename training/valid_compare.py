"""Paired comparison of two training runs on their validation rows (choosing settings).

``python -m training.valid_compare RUN_A RUN_B --data LOG --format kuairand --split S --seed N``

Each run's chosen weights (``model.pt``) are scored on the split's validation rows exactly as
training validated them: the exit-count buffers are refilled from the *training* rows only
(`segint train` refreshes them from training + validation rows after choosing, which would
put each validation row's own exit into its prior). Prints each run's strict validation
metrics and the paired differences A - B with a bootstrap SE over the rows (1000 draws), and
the mean exit NLL. Test rows are never read.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from segint.data import Filters, load_table
from segint.metrics import per_row_metrics
from segint.splits import TRAIN, VALID, assign_split, history_index
from training.checkpoint import load_model
from training.data import InteractionDataset
from training.inference import predict_logits, scores_and_exit_dist
from training.train import set_prior_counts, table_counts_args

METRICS = ("NDCG@5", "NDCG@10", "HR@1", "HR@5", "MAE", "NLL")


def run_rows(
    run: str, table: pl.DataFrame, split: npt.NDArray[np.int8], history: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.float64]]:
    """Per validation row metrics of one run (strict protocol) and its exit NLL."""
    model, cfg, users, videos = load_model(run)
    if cfg.exit_prior > 0:
        fit = table.filter(pl.Series(split == TRAIN))
        set_prior_counts(model, *table_counts_args(fit, videos))
    rows = np.flatnonzero(split == VALID)
    data = InteractionDataset(table, history, rows, users, videos, cfg.s_max)
    target, n_seg = data.targets()
    scores, dist = scores_and_exit_dist(predict_logits(model, data, 1024, "cpu"), n_seg)
    out = per_row_metrics(scores, dist, target, n_seg, "strict")
    p = dist[np.arange(len(target)), np.minimum(target, dist.shape[1] - 1)]
    out["NLL"] = np.where(target < dist.shape[1], -np.log(np.maximum(p, 1e-12)), np.nan)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", default="kuairand")
    ap.add_argument("--split", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--s-max", type=int, default=40)
    ap.add_argument("--history", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = load_table(args.data, args.format, Filters(s_max=args.s_max))
    split = assign_split(table, args.split, args.seed)
    history = history_index(table, args.history)
    a = run_rows(args.run_a, table, split, history)
    b = run_rows(args.run_b, table, split, history)
    rng = np.random.default_rng(0)
    n = len(a["MAE"])
    draws = rng.integers(0, n, (1000, n))
    out = sys.stdout
    out.write(f"validation rows: {n}  ({args.split}, seed {args.seed}, strict)\n")
    out.write(f"{'metric':8} {'A':>8} {'B':>8} {'A-B':>9} {'SE':>8}\n")
    for m in METRICS:
        d = a[m] - b[m]
        ok = ~np.isnan(d)
        dz = np.where(ok, d, 0.0)
        boot = dz[draws].sum(1) / np.maximum(ok[draws].sum(1), 1)
        out.write(
            f"{m:8} {np.nanmean(a[m]):8.4f} {np.nanmean(b[m]):8.4f} "
            f"{np.nanmean(d):+9.4f} {boot.std(ddof=1):8.4f}\n"
        )


if __name__ == "__main__":
    main()
