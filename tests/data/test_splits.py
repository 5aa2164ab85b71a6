"""Splits and histories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from segint.splits import (
    DROPPED,
    TEST,
    TRAIN,
    VALID,
    cold_mask,
    history_index,
    random_per_user,
    temporal,
)


def table(users, times, videos=None) -> pl.DataFrame:
    videos = videos if videos is not None else list(range(len(users)))
    return pl.DataFrame({"user_id": users, "time_ms": times, "video_id": videos}).sort(
        ["user_id", "time_ms"]
    )


def test_random_per_user_fractions_and_per_user_balance():
    """81/9/10 overall; each user's test count is within rounding of 10% of their rows."""
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(500), rng.integers(1, 60, 500))
    df = table(users, rng.integers(0, 10**6, len(users)))
    split = random_per_user(df, seed=3)
    share = np.bincount(split, minlength=3) / len(split)
    assert share == pytest.approx([0.81, 0.09, 0.10], abs=0.01)
    u = df["user_id"].to_numpy()
    for user in range(0, 500, 7):
        rows = u == user
        n_test = int(np.sum(split[rows] == TEST))
        assert np.floor(0.1 * rows.sum()) <= n_test <= np.ceil(0.1 * rows.sum())


def test_random_per_user_is_seeded_and_drops_small_users():
    """Same seed, same split; another seed differs; users below the minimum are dropped."""
    df = table(np.repeat([1, 2, 3], [30, 2, 40]), np.arange(72))
    a, b, c = random_per_user(df, seed=0), random_per_user(df, seed=0), random_per_user(df, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    d = random_per_user(df, seed=0, min_interactions=5)
    assert np.all(d[30:32] == DROPPED) and np.all(d[:30] != DROPPED)


def test_temporal_split_orders_by_time():
    """Every training row is earlier than every validation row, which precede test rows."""
    rng = np.random.default_rng(0)
    df = table(rng.integers(0, 50, 1000), rng.integers(0, 10**6, 1000))
    split = temporal(df)
    t = df["time_ms"].to_numpy()
    assert t[split == TRAIN].max() < t[split == VALID].min()
    assert t[split == VALID].max() < t[split == TEST].min()


def test_history_is_strictly_earlier_same_user_most_recent_first():
    """Views at the same timestamp are not each other's history; other users never leak in."""
    df = table([1, 1, 1, 1, 2], [10, 20, 20, 30, 5])
    h = history_index(df, max_len=3)
    assert h.tolist() == [[-1, -1, -1], [0, -1, -1], [0, -1, -1], [2, 1, 0], [-1, -1, -1]]


def test_cold_mask():
    """Cold = video never seen in the fitting rows."""
    assert cold_mask([1, 2, 2], [2, 3, 1, 4]).tolist() == [False, True, False, True]
