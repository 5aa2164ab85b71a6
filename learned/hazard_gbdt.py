"""``hazard-gbdt``: a LightGBM discrete-time hazard model of the exit slot.

Each training view contributes one row per slot it reached, ``j = 0 .. min(exit, N - 1)``,
labelled 1 at the slot it left in (``j == exit < N``) and 0 before; a view watched to the end
contributes ``N`` rows labelled 0. The classifier's probability is the hazard
``h_j = P(exit = j | exit >= j)``, and the exit distribution follows (`exit_distribution`):

    P(exit = j) = h_j * prod_{i<j} (1 - h_i)     for j < N
    P(exit = N) = prod_{i<N} (1 - h_i)           (watched to the end)

Row features: the view's (`learned.features`: N, duration, hour, leave-one-out video
statistics, the user's earlier views, side tables) plus the slot's: ``slot``, ``slot / N``,
and the hazard at that slot of the video's smoothed profile and of the same-N profile.
Boosting stops at the best validation log-loss (validation rows expanded the same way).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from learned._lgb import GBDT_PARAMS, fit_booster
from learned.base import LearnedInput, LearnedOutput
from learned.features import ViewFeatures, best_encoding

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PARAMS: dict[str, Any] = {"objective": "binary", **GBDT_PARAMS}
MAX_ROUNDS = 1000
PATIENCE = 50
SLOT_FEATURES = ["slot", "slot_fraction", "video_hazard", "length_hazard"]


def exit_distribution(hazards: npt.ArrayLike, n_segments: npt.ArrayLike, s_max: int) -> FloatArray:
    """(n, s_max) exit distribution from (n, s_max) hazards; hazards at slots >= N are ignored.

    Slot ``N`` (watched to the end) gets ``prod_{i<N} (1 - h_i)`` when ``N < s_max``; for
    ``N == s_max`` that mass has no column (`segint.baselines` convention).
    """
    h = np.asarray(hazards, dtype=np.float64)
    n = np.asarray(n_segments, dtype=np.int64)
    real = np.arange(s_max)[None, :] < n[:, None]
    h = np.where(real, h, 0.0)
    survive = np.cumprod(1.0 - h, axis=1)  # survive[:, j] = prod_{i<=j} (1 - h_i)
    before = np.hstack([np.ones((len(n), 1)), survive[:, :-1]])  # prod_{i<j}
    dist = np.where(real, h * before, 0.0)
    rows = np.flatnonzero(n < s_max)
    dist[rows, n[rows]] = survive[rows, n[rows] - 1]
    out: FloatArray = dist
    return out


def profile_hazards(profile: FloatArray) -> FloatArray:
    """(n, S + 1) hazards ``p_j / P(exit >= j)`` of exit distributions over S + 1 outcomes."""
    tail = np.cumsum(profile[:, ::-1], axis=1)[:, ::-1]  # P(exit >= j)
    out: FloatArray = profile / np.maximum(tail, 1e-12)
    return out


def expand(
    x: FloatArray,
    video_h: FloatArray,
    length_h: FloatArray,
    n_segments: IntArray,
    last_slot: IntArray,
) -> tuple[FloatArray, IntArray, IntArray]:
    """One row per (view, slot) for slots ``0..last_slot``: features, view index, slot."""
    counts = last_slot + 1
    view = np.repeat(np.arange(len(x)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    slot = np.arange(len(view)) - starts
    n = n_segments[view].astype(np.float64)
    per_slot = np.column_stack(
        [slot, slot / np.maximum(n, 1.0), video_h[view, slot], length_h[view, slot]]
    )
    return np.hstack([x[view], per_slot]), view, slot


def fit_predict(data: LearnedInput) -> LearnedOutput:
    """Fit on the training rows, stop on the validation rows, score the test rows; the video
    statistics' encoding is chosen by validation log-loss (`learned.features.best_encoding`)."""
    return best_encoding(data, lambda feats: fit_features(data, feats))


def fit_features(data: LearnedInput, feats: ViewFeatures) -> tuple[LearnedOutput, float]:
    """Fit on ``feats`` (one encoding of the video statistics); the output and its validation
    log-loss. `fit_predict` calls it per encoding; `training.teacher` with ``kfold`` only."""
    start = time.perf_counter()
    s = data.s_max
    names = [*feats.names, *SLOT_FEATURES]
    n_fit = data.fit["n_segments"].to_numpy().astype(np.int64)
    exit_fit = data.fit["exit_slot"].to_numpy().astype(np.int64)
    last = np.minimum(exit_fit, n_fit - 1)
    xf, view, slot = expand(
        feats.fit,
        profile_hazards(feats.fit_profile),
        profile_hazards(feats.fit_length_profile),
        n_fit,
        last,
    )
    label = (slot == exit_fit[view]).astype(np.float64)
    is_valid = data.valid[view]
    params = {**PARAMS, "seed": data.seed, "num_threads": data.threads}
    booster = fit_booster(
        params, xf, label, is_valid, names, feats.categorical, MAX_ROUNDS, PATIENCE
    )
    fit_seconds = time.perf_counter() - start
    n_test = data.test["n_segments"].to_numpy().astype(np.int64)
    xt, tview, tslot = expand(
        feats.test,
        profile_hazards(feats.test_profile),
        profile_hazards(feats.test_length_profile),
        n_test,
        np.minimum(n_test, s) - 1,
    )
    h = np.zeros((data.test.height, s))
    h[tview, tslot] = booster.predict(xt, num_iteration=booster.best_iteration)
    dist = exit_distribution(h, n_test, s)
    loss = float(booster.best_score["validation"]["binary_logloss"])
    out = LearnedOutput(
        scores=1.0 - dist,
        exit_dist=dist,
        watch_slots=None,
        settings={
            "best_iteration": int(booster.best_iteration),
            "validation_logloss": float(booster.best_score["validation"]["binary_logloss"]),
            "criterion": "early stopping on validation (view, slot) log-loss",
            "train_rows": int((~is_valid).sum()),
            "params": {k: v for k, v in PARAMS.items() if k != "verbose"},
            "train_seconds": round(fit_seconds, 2),
        },
    )
    return out, loss
