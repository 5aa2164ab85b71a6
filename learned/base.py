"""The contract every learned baseline implements, and its conversion to the harness's methods.

A learner is a function ``LearnedInput -> LearnedOutput``. It fits on ``fit`` rows whose
``valid`` flag is False, uses the ``valid`` rows only to stop early (or to choose a setting),
and scores the ``test`` rows. Outputs follow `segint.baselines`' conventions (``S`` = s_max):

* ``scores`` (n_test, S): interest per slot, higher = more interest; slots are ranked
  ascending, lowest interest = most likely exit;
* ``exit_dist`` (n_test, S): probability of leaving in slot ``j``; slot ``N`` (watched to the
  end) is a column when ``N < S``; rows sum to at most 1 (the mass of ``N == S`` completions
  has no column, as in `segint.baselines.exit_counts`);
* ``watch_slots`` (n_test,): a point estimate of the exit slot, for methods without a
  distribution. It may be fractional: `to_method` turns it into a two-point distribution on
  the neighbouring slots whose mean is the estimate and whose median is the estimate rounded,
  so the report's ``MAE`` judges the rounded slot and ``XAUC`` orders rows by the estimate.

A method with ``exit_dist = None`` has no ranking of slots: the report gives it ``MAE``,
``MAE_mean`` and ``XAUC`` and no HR/NDCG (its scores are NaN in the predictions file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LearnedInput:
    """What a learner sees: fitting rows (training + validation), test rows, side tables."""

    fit: (
        pl.DataFrame
    )  # training + validation rows, as segint.commands.baselines.fit_baselines gets them
    valid: npt.NDArray[np.bool_]  # bool over fit rows: True = validation (early stopping only)
    test: pl.DataFrame  # rows to score
    s_max: int  # slots per video
    seed: int  # seed of every random choice the learner makes
    video_table: pl.DataFrame | None = None  # KuaiRand video side table (raw columns) or None
    user_table: pl.DataFrame | None = None  # KuaiRand user side table (raw columns) or None
    threads: int = 1  # CPU threads the learner may use


@dataclass
class LearnedOutput:
    """A learner's predictions for the test rows and how it was fitted."""

    scores: FloatArray  # (n_test, s_max) interest per slot, same convention as segint.baselines
    exit_dist: FloatArray | None  # (n_test, s_max) exit distribution; None = point estimate only
    watch_slots: (
        FloatArray | None
    )  # (n_test,) point estimate of the exit slot when the method has one
    settings: dict[str, Any] = field(
        default_factory=dict
    )  # best iteration, train seconds, chosen_on


Learner = Callable[[LearnedInput], LearnedOutput]


def point_estimate_dist(
    watch_slots: npt.ArrayLike, n_segments: npt.ArrayLike, s_max: int
) -> FloatArray:
    """(n, s_max) two-point distribution of fractional slot estimates.

    ``x`` (clipped to ``[0, min(N, s_max - 1)]``) puts ``1 - f`` on ``floor(x)`` and ``f`` on
    ``floor(x) + 1`` (``f = x - floor(x)``): its mean is ``x``, its median (the smallest slot
    whose cumulative mass reaches 1/2) is ``floor(x)`` when ``f <= 1/2``, else ``floor(x) + 1``.
    """
    n = np.asarray(n_segments, dtype=np.int64)
    x = np.clip(np.asarray(watch_slots, dtype=np.float64), 0.0, np.minimum(n, s_max - 1))
    lo = np.floor(x).astype(np.int64)
    f = x - lo
    hi = np.minimum(lo + 1, s_max - 1)
    out = np.zeros((len(x), s_max))
    rows = np.arange(len(x))
    out[rows, lo] += 1.0 - f
    out[rows, hi] += f
    return out


def check_output(name: str, out: LearnedOutput, n_test: int, s_max: int) -> None:
    """Raise ValueError when a learner's output breaks the contract (shapes, finiteness)."""
    if out.scores.shape != (n_test, s_max):
        raise ValueError(f"{name}: scores have shape {out.scores.shape}, want {(n_test, s_max)}")
    if out.exit_dist is None and out.watch_slots is None:
        raise ValueError(f"{name}: gives neither an exit distribution nor a point estimate")
    if out.exit_dist is not None:
        d = out.exit_dist
        if d.shape != (n_test, s_max) or not np.isfinite(d).all() or (d < 0).any():
            raise ValueError(f"{name}: exit_dist must be finite, >= 0, shape {(n_test, s_max)}")
        if (d.sum(axis=1) > 1 + 1e-6).any():
            raise ValueError(f"{name}: exit_dist rows sum to more than 1")
        if not np.isfinite(out.scores).all():
            raise ValueError(f"{name}: scores must be finite when exit_dist is given")
    if out.watch_slots is not None:
        w = out.watch_slots
        if w.shape != (n_test,) or not np.isfinite(w).all():
            raise ValueError(f"{name}: watch_slots must be finite with shape {(n_test,)}")


def to_method(
    name: str, out: LearnedOutput, test: pl.DataFrame, s_max: int
) -> tuple[FloatArray, FloatArray]:
    """The ``(scores, exit_dist)`` pair the report evaluates (`segint.baselines.MethodScores`).

    A point-estimate-only method gets NaN scores (no HR/NDCG) and `point_estimate_dist`.
    """
    check_output(name, out, test.height, s_max)
    if out.exit_dist is not None:
        return np.asarray(out.scores, np.float64), np.asarray(out.exit_dist, np.float64)
    assert out.watch_slots is not None
    dist = point_estimate_dist(out.watch_slots, test["n_segments"].to_numpy(), s_max)
    return np.full((test.height, s_max), np.nan), dist
