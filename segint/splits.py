"""Train/validation/test splits and per-row user histories.

All functions take the table from `segint.data.load_table` (sorted by user, then time) and
return numpy arrays aligned with its rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.errors import SegintError

TRAIN, VALID, TEST, DROPPED = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}
SPLIT_METHODS = ("random_per_user", "temporal")


def _check_sorted(df: pl.DataFrame) -> None:
    u = df["user_id"].to_numpy()
    t = df["time_ms"].to_numpy()
    if len(u) > 1 and not np.all((u[1:] > u[:-1]) | ((u[1:] == u[:-1]) & (t[1:] >= t[:-1]))):
        raise ValueError("table must be sorted by (user_id, time_ms); use load_table")


def random_per_user(
    df: pl.DataFrame,
    seed: int = 0,
    valid_frac: float = 0.09,
    test_frac: float = 0.10,
    min_interactions: int = 1,
) -> npt.NDArray[np.int8]:
    """Per-user random split, 81/9/10 by default, reproducible from ``seed``.

    Each user's rows are shuffled and laid on ``[0, 1)`` with one random offset per user
    (systematic sampling): row ``r`` of ``n`` sits at ``(r + U) / n``. Rows below
    ``1 - valid - test`` train, the next ``valid`` validate, the rest test. Every user's split
    is therefore as close to the fractions as ``n`` allows and exact in expectation; unlike
    sklearn's ``ceil(0.1 n)`` per user (the reference), a one-view user is not forced into the
    test set, which on sparse logs (KuaiRand-Pure: 2.3 views per user) would put ~40% of all
    rows in test. Users with fewer than ``min_interactions`` rows are dropped (-1).
    """
    _check_sorted(df)
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise SegintError(f"bad split fractions valid={valid_frac} test={test_frac}")
    rng = np.random.default_rng(seed)
    users = df["user_id"].to_numpy()
    n = len(users)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), counts)
    # Random rank of each row inside its user: sort by (group, random key).
    order = np.lexsort((rng.random(n), group))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    u = (rank + rng.random(len(starts))[group]) / counts[group]
    split = np.full(n, TRAIN, dtype=np.int8)
    split[u >= 1 - valid_frac - test_frac] = VALID
    split[u >= 1 - test_frac] = TEST
    split[counts[group] < min_interactions] = DROPPED
    return split


def temporal(
    df: pl.DataFrame, valid_frac: float = 0.09, test_frac: float = 0.10
) -> npt.NDArray[np.int8]:
    """Split by timestamp: the last ``test_frac`` of rows (by time) test, the ``valid_frac``
    before them validate, everything earlier trains. Ties at a cut go to the later split."""
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise SegintError(f"bad split fractions valid={valid_frac} test={test_frac}")
    t = df["time_ms"].to_numpy()
    t_test = np.quantile(t, 1 - test_frac, method="lower")
    t_valid = np.quantile(t, 1 - test_frac - valid_frac, method="lower")
    split = np.full(len(t), TRAIN, dtype=np.int8)
    if valid_frac > 0:
        split[t >= t_valid] = VALID
    split[t >= t_test] = TEST
    return split


def assign_split(
    df: pl.DataFrame, method: str, seed: int = 0, min_interactions: int = 1
) -> npt.NDArray[np.int8]:
    """Dispatch on the CLI's ``--split`` name."""
    if method == "random_per_user":
        return random_per_user(df, seed=seed, min_interactions=min_interactions)
    if method == "temporal":
        return temporal(df)
    raise SegintError(f"unknown split {method!r}; choose one of {', '.join(SPLIT_METHODS)}")


def history_index(df: pl.DataFrame, max_len: int = 20) -> npt.NDArray[np.int64]:
    """For each row, the row indices of the same user's previous views, most recent first.

    "Previous" means strictly earlier in time (views sharing the timestamp are excluded),
    from any split. Shape ``(n, max_len)``, padded with -1.
    """
    _check_sorted(df)
    users = df["user_id"].to_numpy()
    times = df["time_ms"].to_numpy()
    n = len(users)
    # First row of each (user, time) group = number of the user's strictly earlier rows.
    new_group = np.r_[True, (users[1:] != users[:-1]) | (times[1:] != times[:-1])]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    new_user = np.r_[True, users[1:] != users[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    idx = group_start[:, None] - 1 - np.arange(max_len)[None, :]  # (n, H)
    return np.where(idx >= user_start[:, None], idx, -1).astype(np.int64)


def cold_mask(train_videos: npt.ArrayLike, videos: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """True for rows whose video never occurs in the training rows."""
    return ~np.isin(np.asarray(videos), np.unique(np.asarray(train_videos)))
