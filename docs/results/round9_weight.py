"""Round 9's check of the table weight on validation rows (docs/results/user-signal.md,
"Round 9"): the served MAE, exit NLL and NDCG@5 of ``p = (1 - w) p_network + w p_trees`` for
w = 0, 0.1, ..., 1, each paired with w = 0 and with w = 0.5 on the split's validation rows;
then, at w = 0.5, the network's temperature times f = 0.7 .. 1.4, paired with f = 1.

    .venv/bin/python docs/results/round9_weight.py SPLIT SEED [RUN]

``p_network``: the run (default ``runs/r9-SPLIT-sSEED``, from `docs/results/round9_final.sh`)
with training-row exit counts (`round5_valid.score_validation`) and its calibration
temperature (``RUN/calibration.json``, written by `segint evaluate`); ``p_trees``: hazard-gbdt
on the video's own features fitted on 90% of the training rows (a seeded 10% stops it) and
scoring the validation rows with training-row statistics, normalised per row. Rows whose video
is outside the run's vocabulary keep ``p_network``, as served. Test rows are never read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))
from round5_valid import (  # noqa: E402
    LOG,
    Rows,
    bootstrap_se,
    learned_input,
    score_validation,
    valid_row_metrics,
)

from learned.features import best_encoding, video_only  # noqa: E402
from learned.hazard_gbdt import fit_features  # noqa: E402
from segint.data import Filters, load_table  # noqa: E402
from segint.splits import TRAIN, VALID, assign_split, history_index  # noqa: E402
from segint.vocab import Vocab  # noqa: E402
from segint.watchtime import calibrated_exit_distribution  # noqa: E402
from training.side import kuairand_side_tables  # noqa: E402

METRICS = ("NDCG@5", "MAE", "NLL")


def main() -> None:
    split_name, seed = sys.argv[1], int(sys.argv[2])
    run = sys.argv[3] if len(sys.argv) > 3 else f"runs/r9-{split_name}-s{seed}"
    torch.set_num_threads(1)
    table = load_table(LOG, "kuairand", Filters(s_max=40))
    split = assign_split(table, split_name, seed)
    rows = np.flatnonzero(split == VALID)
    fit = table.filter(pl.Series(split == TRAIN))
    valid = table[rows]
    target = valid["exit_slot"].to_numpy().astype(np.int64)
    n_seg = valid["n_segments"].to_numpy().astype(np.int64)
    stop = np.random.default_rng(seed).random(fit.height) < 0.1
    data = learned_input(fit, stop, valid, seed, kuairand_side_tables())
    trees = best_encoding(data, lambda feats: fit_features(data, video_only(feats))).exit_dist
    assert trees is not None
    trees = trees / trees.sum(axis=1, keepdims=True)
    scores, _ = score_validation(run, table, history_index(table, 20), rows, fit, n_seg)
    temperature = json.loads((Path(run) / "calibration.json").read_text())["temperature"]
    network = calibrated_exit_distribution(scores, n_seg, temperature)
    warm = Vocab.load(Path(run) / "vocab_videos.npy").lookup(valid["video_id"].to_numpy()) > 0
    draws = np.random.default_rng(1).integers(0, len(target), (1000, len(target)))
    res = {}
    for w in np.round(np.linspace(0, 1, 11), 1):
        share = np.where(warm, w, 0.0)[:, None]
        dist = (1 - share) * network + share * trees
        res[w] = valid_row_metrics(np.where(warm[:, None], 1 - dist, scores), dist, target, n_seg)
    for ref in (0.0, 0.5):
        for w, m in res.items():
            _write(f"{split_name} s{seed} w={w:.1f} - w={ref:.1f}", m, res[ref], draws)
    # At w = 0.5, the network's temperature times f: is the run's (fitted for the network
    # alone) still right for the mixture?
    by_f = {}
    share = np.where(warm, 0.5, 0.0)[:, None]
    for f in (0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4):
        net = calibrated_exit_distribution(scores, n_seg, temperature * f)
        dist = (1 - share) * net + share * trees
        by_f[f] = valid_row_metrics(np.where(warm[:, None], 1 - dist, scores), dist, target, n_seg)
    for f, m in by_f.items():
        _write(f"{split_name} s{seed} w=0.5 T={temperature:.3f} x {f} - x 1", m, by_f[1.0], draws)


def _write(label: str, m: Rows, ref: Rows, draws: npt.NDArray[np.int64]) -> None:
    """One line: each metric's mean and its paired difference with ``ref`` ± bootstrap SE."""
    cells = [
        f"{k} {np.nanmean(m[k]):.4f} ({np.nanmean(m[k] - ref[k]):+.4f} ± "
        f"{bootstrap_se(m[k] - ref[k], draws):.4f})"
        for k in METRICS
    ]
    sys.stdout.write(f"{label}: " + " ".join(cells) + "\n")


if __name__ == "__main__":
    main()
