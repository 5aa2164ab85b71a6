"""K-fold exit counts (count_mode "kfold"): training rows scored without their own fold.

The exit-count prior and the user residual are computed from the training rows' exits, and a
training row is one of them. Leave-one-out (count_mode "loo") subtracts the row's own exit,
which leaves its video's profile one count short exactly at the row's true exit: a bias
against the row's own outcome that no validation, test or served row has, and that a learner
can pick up. With K folds, each fitting row falls in one fold by a stable hash of the row
(`count_folds`), and a training row is scored with the counts of the other K - 1 folds
(`fold_counts` here, `training.wrapper` there): its own exit is not in them, and neither is any
bias tied to it. Validation, test and served rows keep the counts of all fitting rows.

The out-of-fold counts are not rescaled by K / (K - 1): a profile counted from 80% of a
video's views is as uncertain as 80% of the views make it, and the smoothing toward the
same-N profile (``exit_prior`` pseudo-views) should weigh it as such; inflating the counts
would hand the network a prior more confident than its evidence.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from model.decoder import FoldCounts, global_profile
from segint.baselines import exit_counts
from segint.splits import row_uniform

IntArray = npt.NDArray[np.int64]
# Salt of the fold hash: the folds are drawn independently of the random_per_user split,
# which hashes the same row identity with the split seed.
FOLD_SALT = 0x5EC1F01D


def count_folds(table: pl.DataFrame, rows: npt.ArrayLike, k: int, seed: int = 0) -> IntArray:
    """(n,) the fold 0..k-1 of each of ``rows`` (table row indices), -1 for the other rows.

    A fixed function of the row's identity (user, video, time) and ``seed``
    (`segint.splits.row_uniform`), so a row keeps its fold whatever else the table holds, and
    duplicate rows share one.
    """
    if k < 2:
        raise ValueError(f"k-fold counts need k >= 2 folds, got {k}")
    u = row_uniform(table, seed ^ FOLD_SALT)
    folds = np.full(table.height, -1, dtype=np.int64)
    idx = np.asarray(rows, dtype=np.int64)
    folds[idx] = np.minimum((u[idx] * k).astype(np.int64), k - 1)
    return folds


def fold_counts(
    video_idx: IntArray,
    n_segments: IntArray,
    exits: IntArray,
    folds: IntArray,
    k: int,
    n_videos: int,
    s_max: int,
    device: torch.device | str = "cpu",
) -> FoldCounts:
    """Exit counts per fold of the rows given (vocabulary video rows, segment counts, exit
    slots and folds 0..k-1, aligned): (k, n_videos, S) per video, row 0 (unknown) empty, and
    (k, S + 1, S) per segment count N; and (k, S) the global profile of the other folds, so
    that not even the one pseudo-view of the global profile in each per-N profile holds the
    row's own exit."""
    if len(folds) and (folds.min() < 0 or folds.max() >= k):
        raise ValueError(f"fold_counts takes rows of folds 0..{k - 1} only")
    video = np.stack([exit_counts(video_idx[folds == f], exits[folds == f], n_videos, s_max)
                      for f in range(k)])  # fmt: skip
    video[:, 0] = 0.0
    n = np.stack([exit_counts(n_segments[folds == f], exits[folds == f], s_max + 1, s_max)
                  for f in range(k)])  # fmt: skip
    video_t = torch.as_tensor(video, dtype=torch.float32, device=device)
    outside = video_t.sum(0, keepdim=True) - video_t  # (k, n_videos, S): the other folds
    return FoldCounts(
        video_t,
        torch.as_tensor(n, dtype=torch.float32, device=device),
        global_profile(outside),
    )
