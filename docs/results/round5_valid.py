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

Round 6 (docs/results/user-signal.md, "Round 6") adds two questions:

* ``--video-trees``: hazard-gbdt fitted on the per-video features only (N, duration, the
  video's exit statistics and side codes, the slot features; no hour, no user statistics or
  side codes), ``video-trees``, and each run's 0.5/0.5 mixture with it (``vmix-RUN``). Its
  exit distribution depends on the video alone, so a service could hold it as a table.
* ``--ensemble RUN``: the 0.5/0.5 mixture of RUN_A with another run (``ens-A+RUN``), e.g.
  the same split and data seed with another initialisation seed: is the trees' mixture gain
  more than averaging two networks gives?
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from learned import LearnedInput, get_learner
from learned.features import best_encoding, video_only
from learned.hazard_gbdt import fit_features
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
    ap.add_argument("--video-trees", action="store_true", help="also per-video-feature trees")
    ap.add_argument("--ensemble", help="another run to mix with RUN_A")
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
        return valid_row_metrics(scores, dist, target, n_seg)

    stop = np.random.default_rng(args.seed).random(fit.height) < 0.1
    learned_in = learned_input(fit, stop, valid, args.seed, kuairand_side_tables())
    d_trees = np.asarray(get_learner("hazard-gbdt")(learned_in).exit_dist)
    res: dict[str, Rows] = {"hazard-gbdt": row_metrics(1 - d_trees, d_trees)}
    d_video = None
    if args.video_trees:
        per_video = best_encoding(learned_in, lambda f: fit_features(learned_in, video_only(f)))
        d_video = np.asarray(per_video.exit_dist)
        res["video-trees"] = row_metrics(1 - d_video, d_video)
    first = None
    for run in [*args.runs, *([args.ensemble] if args.ensemble else [])]:
        scores, dist = score_validation(run, table, history, rows, fit, n_seg)
        name = run.rstrip("/").split("/")[-1]
        if run == args.ensemble and first is not None:
            ens = 0.5 * first[1] + 0.5 * dist
            res[f"ens-{first[0]}+{name}"] = row_metrics(1 - ens, ens)
            continue
        first = first or (name, dist)
        res[name] = row_metrics(scores, dist)
        mix = 0.5 * dist + 0.5 * d_trees
        res[f"mix-{name}"] = row_metrics(1 - mix, mix)
        if d_video is not None:
            vmix = 0.5 * dist + 0.5 * d_video
            res[f"vmix-{name}"] = row_metrics(1 - vmix, vmix)
    draws = np.random.default_rng(1).integers(0, len(target), (1000, len(target)))
    out = sys.stdout
    assert first is not None
    for ref in ("hazard-gbdt", first[0]):
        out.write(f"--- A - {ref} ({args.split}, seed {args.seed}, {len(target)} rows)\n")
        for name, r in res.items():
            cells = [f"{name:28}"]
            for m in METRICS:
                d = r[m] - res[ref][m]
                se = bootstrap_se(d, draws)
                cells.append(f"{m} {np.nanmean(r[m]):.4f} {np.nanmean(d):+.4f} ± {se:.4f}")
            out.write(" | ".join(cells) + "\n")


def valid_row_metrics(
    scores: npt.NDArray[np.float64],
    dist: npt.NDArray[np.float64],
    target: npt.NDArray[np.int64],
    n_seg: npt.NDArray[np.int64],
) -> Rows:
    """Per-row strict metrics of one method, plus the exit outcome's negative log-likelihood."""
    out = per_row_metrics(scores, dist, target, n_seg, "strict")
    p = dist[np.arange(len(target)), np.minimum(target, dist.shape[1] - 1)]
    out["NLL"] = np.where(target < dist.shape[1], -np.log(np.maximum(p, 1e-12)), np.nan)
    return out


def bootstrap_se(diff: npt.NDArray[np.float64], draws: npt.NDArray[np.int64]) -> float:
    """Bootstrap SE of the mean of ``diff`` over its non-NaN rows (``draws``: resampled rows)."""
    ok = ~np.isnan(diff)
    return float((np.where(ok, diff, 0.0)[draws].sum(1) / ok[draws].sum(1)).std(ddof=1))


def learned_input(
    fit: pl.DataFrame,
    stop: npt.NDArray[np.bool_],
    test: pl.DataFrame,
    seed: int,
    sides: tuple[pl.DataFrame | None, pl.DataFrame | None],
    s_max: int = 40,
) -> LearnedInput:
    """Trees fitted on ``fit`` (``stop``: the rows that stop boosting), scoring ``test``."""
    return LearnedInput(
        fit=fit,
        valid=stop,
        test=test,
        s_max=s_max,
        seed=seed,
        video_table=sides[0],
        user_table=sides[1],
        threads=1,
    )


def score_validation(
    run: str,
    table: pl.DataFrame,
    history: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    fit: pl.DataFrame,
    n_seg: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A run's scores and exit distributions on ``rows``, with the exit counts of ``fit`` (the
    training rows), as `training.valid_compare` scores it."""
    model, cfg, users, videos = load_model(run)
    set_prior_counts(model, *table_counts_args(fit, videos))
    data = InteractionDataset(table, history, rows, users, videos, cfg.s_max)
    return scores_and_exit_dist(predict_logits(model, data, 1024, "cpu"), n_seg)


if __name__ == "__main__":
    main()
