"""Round 6's experiment (docs/results/user-signal.md, "Round 6"), validation rows only: the
network's exit prior taken from per-video trees instead of the count-smoothed profile.

    .venv/bin/python docs/results/round6_tree_prior.py SPLIT OUT BASE_RUN [--seed S]

Per-video trees are hazard-gbdt on the features that depend on the video alone
(`round5_valid._per_video`). Training rows of count fold k get the trees fitted on the
training rows outside fold k (the video statistics of those rows: out of fold, as the count
prior and the distillation teacher are); validation rows get trees fitted on all training
rows. Rows whose video id is 0 (unknown, or dropped by id dropout) keep the count prior (the
same-N profile). Everything else is `configs/base.yaml` with data.seed = optim.seed = S. The
prior is swapped in by patching `InterestDecoder.exit_prior_parts` (inference) and
`SegmentInterestTrain.forward` (training) in this process only: nothing here is a model
option, the saved run cannot be scored without this script. After training it pairs the run
with BASE_RUN (the same split and seed, default config) and with hazard-gbdt (fitted as
round5_valid.py fits it) on the validation rows and writes OUT/valid_dist.npy. Test rows are
never read.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from learned import LearnedInput, get_learner
from learned.features import view_features
from learned.hazard_gbdt import fit_features
from model.decoder import InterestDecoder
from segint.data import Filters, load_table
from segint.metrics import per_row_metrics
from segint.splits import TRAIN, VALID, assign_split, history_index
from training import wrapper
from training.checkpoint import load_model
from training.config import load_config
from training.data import InteractionDataset
from training.folds import count_folds
from training.inference import predict_logits, scores_and_exit_dist
from training.side import kuairand_side_tables
from training.train import prepare, set_prior_counts, table_counts_args, train

sys.path.insert(0, str(Path(__file__).parent))
from round5_valid import LOG, METRICS, _per_video  # noqa: E402

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
    video_table, user_table = kuairand_side_tables()
    rows = np.flatnonzero(split == TRAIN)
    valid_rows = np.flatnonzero(split == VALID)
    folds = count_folds(table, rows, k, seed)[rows]
    rng = np.random.default_rng(seed)
    vidx = videos.lookup(table["video_id"].to_numpy())

    def per_video_trees(fit_rows: npt.NDArray[np.int64], test_rows: npt.NDArray[np.int64]) -> Any:
        data = LearnedInput(
            fit=table[fit_rows],
            valid=rng.random(len(fit_rows)) < 0.1,
            test=table[test_rows],
            s_max=s,
            seed=seed,
            video_table=video_table,
            user_table=user_table,
            threads=1,
        )
        out, loss = fit_features(data, _per_video(view_features(data, "kfold")))
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
            parts = parts.clone()
            parts[..., 0] = torch.where(use[:, None], full_log[video_ids], parts[..., 0])
        return parts

    def forward_with_trees(self: wrapper.SegmentInterestTrain, batch: Any) -> torch.Tensor:
        assert self.fold_counts is not None  # count_mode kfold (configs/base.yaml)
        m, fc = self.model, (self.fold_counts, batch.fold, batch.hist_fold)
        h = (batch.hist_video_ids, batch.hist_exit_slots, batch.hist_n_segments, batch.hist_mask)
        residual = m.user_residual(*h, folds=fc)
        if self.training and self.id_dropout > 0:
            batch = replace(
                batch,
                user_ids=self._drop_ids(batch.user_ids),
                hist_video_ids=self._drop_ids(batch.hist_video_ids),
                video_ids=self._drop_ids(batch.video_ids),
            )
        states = m.encode(**batch.inputs())
        removed = fc[0].removed(fc[1], batch.video_ids, batch.n_segments)
        prior = m.decoder.exit_prior_parts(batch.video_ids, None, batch.n_segments, removed)
        prior = prior.clone()
        trees = fold_log[batch.fold.clamp(min=0), batch.video_ids]
        prior[..., 0] = torch.where((batch.video_ids > 0)[:, None], trees, prior[..., 0])
        out: torch.Tensor = m.decoder(
            states, batch.video_ids, batch.n_segments, user_residual=residual, prior=prior
        )
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
        r = per_row_metrics(scores, dist, target, n_seg, "strict")
        p = dist[np.arange(len(target)), np.minimum(target, dist.shape[1] - 1)]
        r["NLL"] = np.where(target < dist.shape[1], -np.log(np.maximum(p, 1e-12)), np.nan)
        return r

    def scored(run: str, trees: bool) -> tuple[FloatArray, FloatArray]:
        InterestDecoder.exit_prior_parts = parts_with_trees if trees else plain_parts  # type: ignore[method-assign]
        model, mcfg, users, vids = load_model(run)
        set_prior_counts(model, *table_counts_args(fit, vids))  # training-row counts
        data = InteractionDataset(table, history, valid_rows, users, vids, mcfg.s_max)
        return scores_and_exit_dist(predict_logits(model, data, 1024, "cpu"), n_seg)

    mine = scored(args.out, True)
    np.save(Path(args.out) / "valid_dist.npy", mine[1])
    gbdt = get_learner("hazard-gbdt")(
        LearnedInput(
            fit=fit,
            valid=np.random.default_rng(seed).random(fit.height) < 0.1,
            test=valid,
            s_max=s,
            seed=seed,
            video_table=video_table,
            user_table=user_table,
            threads=1,
        )
    )
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
            ok = ~np.isnan(d)
            se = (np.where(ok, d, 0.0)[draws].sum(1) / ok[draws].sum(1)).std(ddof=1)
            cells.append(f"{name} {np.nanmean(d):+.4f} ± {se:.4f}")
        sys.stdout.write(" | ".join(cells) + "\n")


if __name__ == "__main__":
    main()
