"""Round 5's choice on validation rows (docs/results/user-signal.md, "Round 5"): each training
run against hazard-gbdt and against the first run, paired on the split's validation rows.

    .venv/bin/python docs/results/round5_valid.py SPLIT RUN_A [RUN_B ...] [--seed 0]

hazard-gbdt is fitted on 90% of the training rows (a seeded 10% stops its boosting) and
scores the validation rows: `segint baselines` stops it on the validation rows themselves,
so it could not be paired on them. Each run is scored as `training.valid_compare` scores it
(chosen weights, exit counts of the training rows only). Every run also gets a 0.5/0.5
mixture of its exit distribution with the trees' (``mix-RUN``). Prints, for each reference
(hazard-gbdt, then RUN_A), every method's NDCG@5, NDCG@10, HR@1, MAE and exit NLL and the
paired difference ± bootstrap SE over the rows (1000 draws). Test rows are never read.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from learned import LearnedInput, get_learner
from segint.data import Filters, load_table
from segint.metrics import per_row_metrics
from segint.splits import TRAIN, VALID, assign_split, history_index
from training.checkpoint import load_model
from training.data import InteractionDataset
from training.inference import predict_logits, scores_and_exit_dist
from training.side import kuairand_side_tables
from training.train import set_prior_counts, table_counts_args

LOG = "../shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv"
METRICS = ("NDCG@5", "NDCG@10", "HR@1", "MAE", "NLL")
Rows = dict[str, npt.NDArray[np.float64]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("split")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=LOG)
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = load_table(args.data, "kuairand", Filters(s_max=40))
    split = assign_split(table, args.split, args.seed)
    history = history_index(table, 20)
    rows = np.flatnonzero(split == VALID)
    fit = table.filter(pl.Series(split == TRAIN))
    valid = table[rows]
    target = valid["exit_slot"].to_numpy().astype(np.int64)
    n_seg = valid["n_segments"].to_numpy().astype(np.int64)

    def row_metrics(scores: npt.NDArray[np.float64], dist: npt.NDArray[np.float64]) -> Rows:
        out = per_row_metrics(scores, dist, target, n_seg, "strict")
        p = dist[np.arange(len(target)), np.minimum(target, dist.shape[1] - 1)]
        out["NLL"] = np.where(target < dist.shape[1], -np.log(np.maximum(p, 1e-12)), np.nan)
        return out

    video_table, user_table = kuairand_side_tables()
    trees = get_learner("hazard-gbdt")(
        LearnedInput(
            fit=fit,
            valid=np.random.default_rng(args.seed).random(fit.height) < 0.1,
            test=valid,
            s_max=40,
            seed=args.seed,
            video_table=video_table,
            user_table=user_table,
            threads=1,
        )
    )
    d_trees = np.asarray(trees.exit_dist)
    res: dict[str, Rows] = {"hazard-gbdt": row_metrics(1 - d_trees, d_trees)}
    for run in args.runs:
        model, cfg, users, videos = load_model(run)
        set_prior_counts(model, *table_counts_args(fit, videos))
        data = InteractionDataset(table, history, rows, users, videos, cfg.s_max)
        scores, dist = scores_and_exit_dist(predict_logits(model, data, 1024, "cpu"), n_seg)
        name = run.rstrip("/").split("/")[-1]
        res[name] = row_metrics(scores, dist)
        mix = 0.5 * dist + 0.5 * d_trees
        res[f"mix-{name}"] = row_metrics(1 - mix, mix)
    draws = np.random.default_rng(1).integers(0, len(target), (1000, len(target)))
    out = sys.stdout
    for ref in ("hazard-gbdt", list(res)[1]):
        out.write(f"--- A - {ref} ({args.split}, seed {args.seed}, {len(target)} rows)\n")
        for name, r in res.items():
            cells = [f"{name:28}"]
            for m in METRICS:
                d = r[m] - res[ref][m]
                ok = ~np.isnan(d)
                se = (np.where(ok, d, 0.0)[draws].sum(1) / ok[draws].sum(1)).std(ddof=1)
                cells.append(f"{m} {np.nanmean(r[m]):.4f} {np.nanmean(d):+.4f} ± {se:.4f}")
            out.write(" | ".join(cells) + "\n")


if __name__ == "__main__":
    main()
