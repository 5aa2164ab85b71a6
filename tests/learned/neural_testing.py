"""Tiny logs for the neural learned baselines' tests, built in memory."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from learned.base import LearnedInput, LearnedOutput
from learned.neural import NeuralConfig
from segint.segments import SEGMENT_MS


def planted_log(n_users: int = 60, views: int = 8, seed: int = 0) -> pl.DataFrame:
    """A prepared-style log whose exit slot is a function of the video's length alone.

    Videos of 4 segments are always left in slot 1, videos of 2 segments always watched to
    the end (exit slot 2), videos of 6 segments left in slot 0: a learner that uses N must
    find it, one that ignores N cannot.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k in range(views):
            v = int(rng.integers(0, 30))
            n = (2, 4, 6)[v % 3]
            exit_slot = {2: 2, 4: 1, 6: 0}[n]
            duration = n * SEGMENT_MS - 1000
            play = duration if exit_slot == n else exit_slot * SEGMENT_MS + 2500
            rows.append((u, v, 1_000_000 * k + u, duration, play, n, exit_slot))
    cols = ["user_id", "video_id", "time_ms", "duration_ms", "play_time_ms"]
    df = pl.DataFrame(rows, schema=[*cols, "n_segments", "exit_slot"], orient="row")
    return df.sort(["user_id", "time_ms", "video_id", "play_time_ms"])


def split_input(df: pl.DataFrame, seed: int = 0, s_max: int = 8) -> LearnedInput:
    """Per user: the last view is a test row, the one before it validates, the rest train."""
    rank = df.select(pl.int_range(pl.len()).over("user_id").alias("r"))["r"].to_numpy()
    size = df.select(pl.len().over("user_id").alias("c"))["c"].to_numpy()
    test = rank == size - 1
    valid = rank == size - 2
    fit = df.filter(pl.Series(~test))
    return LearnedInput(
        fit=fit,
        valid=valid[~test],
        test=df.filter(pl.Series(test)),
        s_max=s_max,
        seed=seed,
        video_table=None,
        user_table=None,
    )


def assert_learns_planted_rule(
    fit_predict: Callable[[LearnedInput, NeuralConfig], LearnedOutput],
    cfg: NeuralConfig,
    seed: int,
) -> tuple[LearnedInput, LearnedOutput]:
    """Fit on `planted_log` (N decides the exit slot): well-formed exit distributions with no
    mass past N, the rule found on > 90% of test rows, and the same scores from a second fit
    with the same seed. Returns the input and the first fit's output for further checks."""
    inp = split_input(planted_log(), seed=seed)
    out = fit_predict(inp, cfg)
    assert out.exit_dist is not None
    n = inp.test["n_segments"].to_numpy()
    exit_slot = inp.test["exit_slot"].to_numpy()
    assert out.scores.shape == out.exit_dist.shape == (inp.test.height, inp.s_max)
    np.testing.assert_allclose(out.exit_dist.sum(axis=1), 1.0, atol=1e-9)
    assert (out.exit_dist[np.arange(8)[None, :] > n[:, None]] == 0).all()
    assert (out.exit_dist.argmax(axis=1) == exit_slot).mean() > 0.9
    again = fit_predict(inp, cfg)
    np.testing.assert_array_equal(out.scores, again.scores)
    return inp, out
