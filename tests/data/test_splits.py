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
    row_uniform,
    temporal,
)


def table(users, times, videos=None) -> pl.DataFrame:
    videos = videos if videos is not None else list(range(len(users)))
    return pl.DataFrame({"user_id": users, "time_ms": times, "video_id": videos}).sort(
        ["user_id", "time_ms"]
    )


def test_random_per_user_fractions_overall_and_per_user():
    """81/9/10 overall, and each user's rows split 81/9/10 in expectation (not pooled only)."""
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(500), rng.integers(1, 60, 500))
    df = table(users, rng.integers(0, 10**6, len(users)))
    split = random_per_user(df, seed=3)
    share = np.bincount(split, minlength=3) / len(split)
    assert share == pytest.approx([0.81, 0.09, 0.10], abs=0.01)
    # Per user, not per user group: the test share averaged over users (each weighs 1) is 10%,
    # and users with many views have both training and test rows.
    per_user = (
        pl.DataFrame({"u": df["user_id"], "test": split == TEST})
        .group_by("u")
        .agg(share=pl.col("test").mean(), n=pl.len())
    )
    assert per_user["share"].mean() == pytest.approx(0.10, abs=0.02)
    big = per_user.filter(pl.col("n") >= 30)["share"]
    assert ((big > 0) & (big < 1)).mean() > 0.9


def test_random_per_user_is_stable_when_rows_are_added_or_filtered():
    """A row's split depends on (seed, user, video, time) only: adding rows (more users, more
    views of existing users) or dropping rows by a filter moves no surviving row."""
    rng = np.random.default_rng(5)
    n = 4000
    full = pl.DataFrame(
        {
            "user_id": rng.integers(0, 300, n),
            "video_id": rng.integers(0, 900, n),
            "time_ms": rng.integers(0, 10**9, n),
            "duration_ms": rng.integers(1000, 300_000, n),
        }
    ).sort(["user_id", "time_ms", "video_id"])
    keyed = full.with_columns(split=pl.Series(random_per_user(full, seed=7)))
    key = ["user_id", "video_id", "time_ms"]
    # a filter on a column outside the identity (as --s-max does) and a subset of users/rows
    filtered = full.filter(pl.col("duration_ms") < 100_000)
    sub = full.sample(fraction=0.3, seed=1).sort(["user_id", "time_ms", "video_id"])
    for part in (filtered, sub):
        again = part.with_columns(split=pl.Series(random_per_user(part, seed=7)))
        joined = again.join(keyed, on=key, suffix="_full")
        assert joined.height == part.height
        assert (joined["split"] == joined["split_full"]).all()
    # and the old split's rows keep theirs when the table grows
    assert (keyed.filter(pl.col("time_ms") < 5 * 10**8).height) < n
    early = full.filter(pl.col("time_ms") < 5 * 10**8)
    early_split = early.with_columns(split=pl.Series(random_per_user(early, seed=7)))
    assert (
        early_split.join(keyed, on=key, suffix="_full")
        .select((pl.col("split") == pl.col("split_full")).all())
        .item()
    )


def test_random_per_user_assignment_is_pinned():
    """The hash is plain integer arithmetic: these rows get these splits on every machine and
    library version. A change here silently changes every random_per_user table."""
    df = table([1] * 20 + [2] * 20, list(range(40)), list(range(100, 120)) * 2)
    got = ["".join(map(str, random_per_user(df, seed=s).tolist())) for s in (0, 1)]
    assert got == [
        "2000000010020000000000002200000000000002",
        "0000000000000200020000000000210020000001",
    ]
    assert row_uniform(df, 0)[:3].tolist() == pytest.approx([0.97003107, 0.66633156, 0.79442505])


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
