"""What the interest features add beyond the video's own label rate, on one split's
validation rows (round 4, idea 3: why the gain of the temporal split vanishes on
random_per_user).

usage: python docs/results/segrec/feature_auc4.py DATA INTEREST_RUN SPLIT SEED

For the training rows the interest features are the cross-fitted ones
(INTEREST_RUN/crossfit_k5/oof_logits.npy, written by `segint segrec train`), for the validation
rows the interest model's own, as in SegRec. The video's label rate is the training rows' mean
label of the video, smoothed with 10 pseudo-views of the global rate (leave-one-out on the
training rows). Two logistic regressions are fitted on the training rows (Newton, numpy):
[logit(video rate), N one-hot] and the same plus the 8 interest features; the table gives their
validation AUC and each feature's own validation AUC. Validation rows only: no test row is read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from segint.data import Filters
from segint.source import DataSource
from segint.splits import TRAIN, VALID
from segrec.interest import interest_logits
from segrec.labels import fit_label
from segrec.metrics import auc
from segrec.network import interest_features

NAMES = ["expected", "median", "completion", "early exit", "entropy", "P>=25%", "P>=50%", "P>=75%"]


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    x = np.c_[x, np.ones(len(x))]
    w = np.zeros(x.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-(x @ w)))
        g = x.T @ (p - y) + l2 * w
        h = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return w


def main(data: str, run: str, split_name: str, seed: int) -> None:
    src = DataSource(
        data=data,
        split=split_name,
        seed=seed,
        min_interactions=1,
        format="kuairand",
        filters=Filters(),
    )
    loaded = src.load()
    table, split = loaded.table, loaded.split
    tr, va = np.flatnonzero(split == TRAIN), np.flatnonzero(split == VALID)
    t = table[tr]
    label = fit_label(t["play_time_ms"], t["duration_ms"], [0, 30, 60, 90, 120, 150, 180, 200])
    y = label(table["play_time_ms"].to_numpy(), table["duration_ms"].to_numpy()).astype(float)
    n_seg = table["n_segments"].to_numpy().astype(np.int64)
    oof = np.load(Path(run) / "crossfit_k5" / "oof_logits.npy")
    own = interest_logits(run, table, va, s_max=40)
    logits = np.concatenate([oof, own])
    rows = np.concatenate([tr, va])
    feats = interest_features(torch.from_numpy(logits), torch.from_numpy(n_seg[rows])).numpy()
    vid = table["video_id"].to_numpy()
    g = y[tr].mean()
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for v, lab in zip(vid[tr], y[tr], strict=True):
        sums[v] = sums.get(v, 0.0) + lab
        counts[v] = counts.get(v, 0) + 1

    def rate(v: int, own_label: float | None) -> float:
        s, c = sums.get(v, 0.0), counts.get(v, 0)
        if own_label is not None:
            s, c = s - own_label, c - 1
        return (s + 10 * g) / (c + 10)

    r = np.array(
        [rate(v, y[i]) for v, i in zip(vid[tr], tr, strict=True)] + [rate(v, None) for v in vid[va]]
    )
    onehot = np.eye(41)[n_seg[rows]]
    base = np.c_[np.log(r / (1 - r)), onehot]
    full = np.c_[base, feats]
    ntr = len(tr)
    yy = y[rows]
    out = sys.stdout.write
    seen = np.array([counts.get(v, 0) for v in vid[va]])
    out(
        f"{split_name} seed {seed}: {ntr} training rows, {len(va)} validation rows; "
        f"validation videos seen in training {np.mean(seen > 0):.3f}, median views {np.median(seen):.0f}\n"
    )
    for name, x in (("video rate + N", base), ("video rate + N + interest features", full)):
        w = logistic(x[:ntr], yy[:ntr])
        score = np.c_[x[ntr:], np.ones(len(va))] @ w
        out(f"  validation AUC, {name}: {auc(yy[ntr:], score):.4f}\n")
    out(f"  validation AUC, video rate alone: {auc(yy[ntr:], r[ntr:]):.4f}\n")
    for j, name in enumerate(NAMES):
        out(
            f"  validation AUC, {name}: {auc(yy[ntr:], feats[ntr:, j]):.4f}"
            f" (training rows, cross-fitted: {auc(yy[:ntr], feats[:ntr, j]):.4f})\n"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
