"""One LightGBM fit with early stopping on validation rows, shared by the tree learners."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
# The LightGBM settings hazard-gbdt and d2q share; each learner adds its objective.
GBDT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
}


def fit_booster(
    params: dict[str, Any],
    x: FloatArray,
    y: FloatArray,
    valid: npt.NDArray[np.bool_],
    names: list[str],
    categorical: list[str],
    max_rounds: int,
    patience: int,
) -> Any:
    """A booster fitted on ``~valid`` rows, stopped at the best score on ``valid`` rows.

    Without validation rows (a tiny node of a tree) it boosts ``max_rounds // 10`` rounds.
    """
    import lightgbm as lgb

    train_set = lgb.Dataset(
        x[~valid], y[~valid], feature_name=names, categorical_feature=categorical
    )
    if not valid.any():
        return lgb.train(params, train_set, num_boost_round=max(max_rounds // 10, 1))
    valid_set = lgb.Dataset(x[valid], y[valid], reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )
