"""Diagnostics for the SegRec table: how much label signal the frozen interest logits carry."""

import sys

import numpy as np
import polars as pl
import torch

from segint.data import load_table
from segint.heads import exit_distribution, outcome_mask
from segint.splits import TEST, TRAIN, assign_split
from segrec.interest import interest_logits, itemposition_logits
from segrec.labels import fit_label
from segrec.metrics import auc
from segrec.network import interest_weights

D = "/work/shared/data/kuairand_pure/log_standard_4_25_to_4_30_pure.csv"
t = load_table(D, "kuairand")
for seed in map(int, sys.argv[1:]):
    split = assign_split(t, "random_per_user", seed)
    tr = t.filter(pl.Series(split == TRAIN))
    label = fit_label(tr["play_time_ms"], tr["duration_ms"])
    y = label(t["play_time_ms"].to_numpy(), t["duration_ms"].to_numpy())
    n = t["n_segments"].to_numpy()
    rows = np.flatnonzero((split == TRAIN) | (split == TEST))
    p = interest_logits(f"runs/segrec/interest_s{seed}", t, rows, s_max=40)
    q = itemposition_logits(tr, t[rows], 40)
    out = {}
    for name, logits in (("interest", p), ("itempos", q)):
        dist = exit_distribution(logits, outcome_mask(n[rows], 40))  # softmax(-p) over 0..N
        frac = (dist @ np.arange(40)) / n[rows]  # expected exit slot / N
        w = interest_weights(torch.from_numpy(logits), torch.from_numpy(n[rows])).numpy()
        ent = -(w * np.log(np.where(w > 0, w, 1))).sum(1) / np.log(np.maximum(n[rows], 2))
        for part, code in (("train", TRAIN), ("test", TEST)):
            m = split[rows] == code
            out[f"{name} {part}: AUC(E[exit]/N)"] = auc(y[rows][m], frac[m])
            # the integration only sees softmax(p) on real slots: is *that* informative alone?
            out[f"{name} {part}: AUC(w_0)"] = auc(y[rows][m], -w[m, 0])
            out[f"{name} {part}: weight entropy/logN"] = float(ent[m & (n[rows] > 1)].mean())
        if name == "interest":
            wi = w
        else:
            m = split[rows] == TEST
            out["test: mean TV distance SegRec vs ItemPosition weights"] = float(
                0.5 * np.abs(wi[m] - w[m]).sum(1).mean()
            )
    for _k, _v in out.items():
        pass
