"""``d2q``: duration-grouped quantile labels (after D2Q, Zhan et al., KDD 2022,
"Deconfounding Duration Bias in Watch-time Prediction for Video Recommendation").

Views are grouped by duration; here the group is the segment count ``N`` (the exit slot's
range is ``0..N``, so ``N`` is the natural duration bucket of this task). Each training view's
label is the quantile of its exit slot among the training views of its group, the mid-rank
``(F(x-) + F(x)) / 2`` so that ties get one value. One LightGBM regressor (squared error,
early-stopped on validation views labelled with the training groups' quantiles) predicts
the quantile ``q`` from the view features (`learned.features`); the estimate is the group's
exit-slot quantile function at ``q``, interpolated linearly between the group's sorted
training exits, so it is a fractional slot. A group without training views falls back on
all training views, clipped to ``N``.

D2Q gives a point estimate only: the report shows its MAE (of the estimate rounded to a slot),
MAE_mean and XAUC (rows ordered by the fractional estimate), no HR/NDCG.
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
PARAMS: dict[str, Any] = {"objective": "regression", **GBDT_PARAMS}
MAX_ROUNDS = 1000
PATIENCE = 50


def quantile_labels(
    group: npt.NDArray[np.int64],
    exits: npt.NDArray[np.int64],
    ref_group: npt.NDArray[np.int64],
    ref_exits: npt.NDArray[np.int64],
) -> FloatArray:
    """Mid-rank quantile of each exit among the reference views of its group.

    ``(#{ref < x} + #{ref <= x}) / (2 * #ref)`` over the reference views of the same group;
    0.5 where the group has no reference view.
    """
    out = np.full(len(exits), 0.5)
    for g in np.unique(group):
        ref = np.sort(ref_exits[ref_group == g])
        rows = group == g
        if len(ref) == 0:
            continue
        below = np.searchsorted(ref, exits[rows], side="left")
        upto = np.searchsorted(ref, exits[rows], side="right")
        out[rows] = (below + upto) / (2.0 * len(ref))
    return out


def quantile_slots(
    q: FloatArray,
    group: npt.NDArray[np.int64],
    ref_group: npt.NDArray[np.int64],
    ref_exits: npt.NDArray[np.int64],
) -> FloatArray:
    """Fractional exit slot at quantile ``q`` of each row's group (all views if none)."""
    out = np.empty(len(q))
    pooled = np.sort(ref_exits).astype(np.float64)
    for g in np.unique(group):
        ref = np.sort(ref_exits[ref_group == g]).astype(np.float64)
        ref = ref if len(ref) else np.minimum(pooled, g)
        rows = group == g
        # Sorted value k sits at the mid-rank quantile (k + 1/2) / n: invert that.
        grid = (np.arange(len(ref)) + 0.5) / len(ref)
        out[rows] = np.interp(np.clip(q[rows], 0.0, 1.0), grid, ref)
    return out


def fit_predict(data: LearnedInput) -> LearnedOutput:
    """Fit the quantile regressor on training views, stop on validation, score test views;
    the video statistics' encoding is chosen by validation squared error."""
    return best_encoding(data, lambda feats: _fit(data, feats))


def _fit(data: LearnedInput, feats: ViewFeatures) -> tuple[LearnedOutput, float]:
    start = time.perf_counter()
    exits = data.fit["exit_slot"].to_numpy().astype(np.int64)
    group = data.fit["n_segments"].to_numpy().astype(np.int64)
    train = ~data.valid
    y = quantile_labels(group, exits, group[train], exits[train])
    params = {**PARAMS, "seed": data.seed, "num_threads": data.threads}
    booster = fit_booster(
        params, feats.fit, y, data.valid, feats.names, feats.categorical, MAX_ROUNDS, PATIENCE
    )
    q = booster.predict(feats.test, num_iteration=booster.best_iteration)
    test_group = data.test["n_segments"].to_numpy().astype(np.int64)
    slots = quantile_slots(q, test_group, group[train], exits[train])
    loss = float(booster.best_score["validation"]["l2"])
    out = LearnedOutput(
        scores=np.full((data.test.height, data.s_max), np.nan),
        exit_dist=None,
        watch_slots=slots,
        settings={
            "best_iteration": int(booster.best_iteration),
            "validation_l2": loss,
            "criterion": "early stopping on validation views' squared quantile error",
            "groups": "n_segments",
            "params": {k: v for k, v in PARAMS.items() if k != "verbose"},
            "train_seconds": round(time.perf_counter() - start, 2),
        },
    )
    return out, loss
