"""Round 6's experiment (docs/results/user-signal.md, "Round 6"), validation rows only: the
network's exit prior taken from per-video trees instead of the count-smoothed profile.

    .venv/bin/python docs/results/round6_tree_prior.py SPLIT OUT BASE_RUN [--seed S]

Per-video trees are hazard-gbdt on the features that depend on the video alone
(`learned.features.video_only`). Training rows of count fold k get the trees fitted on the
training rows outside fold k (the video statistics of those rows: out of fold, as the count
prior and the distillation teacher are); validation rows get trees fitted on all training
rows. Rows whose video id is 0 (unknown, or dropped by id dropout) keep the count prior (the
same-N profile). Everything else is `configs/base.yaml` with data.seed = optim.seed = S. The
prior is swapped in by patching `InterestDecoder.exit_prior_parts` (validation rows; and
training rows, whose count folds the patched `SegmentInterestTrain.forward` records before
calling the real one) in this process only: nothing here is a model
option, the saved run cannot be scored without this script. After training it pairs the run
with BASE_RUN (the same split and seed, default config) and with hazard-gbdt (fitted as
round5_valid.py fits it) on the validation rows and writes OUT/valid_dist.npy. Test rows are
never read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from learned import get_learner
from learned.features import video_only, view_features
from learned.hazard_gbdt import fit_features
from model.decoder import InterestDecoder
from segint.data import Filters, load_table
from segint.splits import TRAIN, VALID, assign_split, history_index
from training import wrapper
from training.config import load_config
from training.folds import count_folds
from training.side import kuairand_side_tables
from training.train import prepare, train

sys.path.insert(0, str(Path(__file__).parent))
from round5_valid import (  # noqa: E402
    LOG,
    METRICS,
    bootstrap_se,
    learned_input,
    score_validation,
    valid_row_metrics,
)

FloatArray = npt.NDArray[np.float64]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("split")
    ap.add_argument("out")
    ap.add_argument("base_run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seed = args.seed
    sets = [f"data.split={args.split}", f"data.seed={seed}", f"optim.seed={seed}"]
    cfg = load_config("configs/base.yaml", sets)
    s = cfg.data.s_max
    table = load_table(LOG, "kuairand", Filters(s_max=s))
    split = assign_split(table, args.split, seed)
    prep = prepare(cfg, table, split)
    videos, k = prep.videos, prep.model_cfg.count_folds
    sides = kuairand_side_tables()
    rows = np.flatnonzero(split == TRAIN)
    valid_rows = np.flatnonzero(split == VALID)
    folds = count_folds(table, rows, k, seed)[rows]
    rng = np.random.default_rng(seed)
    vidx = videos.lookup(table["video_id"].to_numpy())

    def per_video_trees(fit_rows: npt.NDArray[np.int64], test_rows: npt.NDArray[np.int64]) -> Any:
        stop = rng.random(len(fit_rows)) < 0.1
        data = learned_input(table[fit_rows], stop, table[test_rows], seed, sides, s)
        out, loss = fit_features(data, video_only(view_features(data, "kfold")))
        out_ = f"per-video trees: {len(fit_rows)} rows, {len(test_rows)} scored, loss {loss:.5f}\n"
        sys.stdout.write(out_)
        return np.asarray(out.exit_dist)

    by_fold = np.zeros((k, len(videos), s), np.float32)
    for f in range(k):
        in_fold = rows[folds == f]
        by_fold[f, vidx[in_fold]] = per_video_trees(rows[folds != f], in_fold)
    full = np.zeros((len(videos), s), np.float32)
    full[vidx[valid_rows]] = per_video_trees(rows, valid_rows)
    fold_log = torch.as_tensor(np.log(np.maximum(by_fold, 1e-8)))
    full_log = torch.as_tensor(np.log(np.maximum(full, 1e-8)))
    has_full = torch.as_tensor(full.sum(1) > 0)
    plain_parts = InterestDecoder.exit_prior_parts

    def parts_with_trees(
        self: InterestDecoder,
        video_ids: torch.Tensor,
        exclude: torch.Tensor | None,
        n_segments: torch.Tensor | None = None,
        removed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        parts = plain_parts(self, video_ids, exclude, n_segments, removed)
        if removed is None and exclude is None:  # inference (validation rows)
            use = (video_ids > 0) & has_full[video_ids]
            trees = full_log[video_ids]
        elif removed is not None:  # training (count_mode kfold): the batch's folds' trees
            use = video_ids > 0  # ids after id dropout, as the wrapper passes them
            trees = fold_log[batch_folds[0].clamp(min=0), video_ids]
        else:
            return parts
        parts = parts.clone()
        parts[..., 0] = torch.where(use[:, None], trees, parts[..., 0])
        return parts

    plain_forward = wrapper.SegmentInterestTrain.forward
    batch_folds: list[torch.Tensor] = []  # the training batch being scored (its count folds)

    def forward_with_trees(self: wrapper.SegmentInterestTrain, batch: Any) -> torch.Tensor:
        batch_folds[:] = [batch.fold]
        out: torch.Tensor = plain_forward(self, batch)
        return out

    InterestDecoder.exit_prior_parts = parts_with_trees  # type: ignore[method-assign]
    wrapper.SegmentInterestTrain.forward = forward_with_trees  # type: ignore[method-assign]
    result = train(cfg, table, split, args.out, device="cpu", progress=False)
    sys.stdout.write(
        f"best validation NDCG@5 {result.best_metric:.4f} at step {result.best_step}\n"
    )

    history = history_index(table, 20)
    fit = table.filter(pl.Series(split == TRAIN))
    valid = table[valid_rows]
    target = valid["exit_slot"].to_numpy().astype(np.int64)
    n_seg = valid["n_segments"].to_numpy().astype(np.int64)

    def row_metrics(scores: FloatArray, dist: FloatArray) -> dict[str, FloatArray]:
        return valid_row_metrics(scores, dist, target, n_seg)

    def scored(run: str, trees: bool) -> tuple[FloatArray, FloatArray]:
        InterestDecoder.exit_prior_parts = parts_with_trees if trees else plain_parts  # type: ignore[method-assign]
        return score_validation(run, table, history, valid_rows, fit, n_seg)

    mine = scored(args.out, True)
    np.save(Path(args.out) / "valid_dist.npy", mine[1])
    stop = np.random.default_rng(seed).random(fit.height) < 0.1
    gbdt = get_learner("hazard-gbdt")(learned_input(fit, stop, valid, seed, sides, s))
    d_gbdt = np.asarray(gbdt.exit_dist)
    res = {
        "tree prior": row_metrics(*mine),
        "base": row_metrics(*scored(args.base_run, False)),
        "hazard-gbdt": row_metrics(1 - d_gbdt, d_gbdt),
    }
    draws = np.random.default_rng(1).integers(0, len(target), (1000, len(target)))
    for ref in ("base", "hazard-gbdt"):
        cells = [f"{args.split} s{seed} tree prior - {ref} ({len(target)} rows)"]
        for name in METRICS:
            d = res["tree prior"][name] - res[ref][name]
            se = bootstrap_se(d, draws)
            cells.append(f"{name} {np.nanmean(d):+.4f} ± {se:.4f}")
        sys.stdout.write(" | ".join(cells) + "\n")


if __name__ == "__main__":
    main()
