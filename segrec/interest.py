"""Slot-weight logits for the integration: frozen segment interest, or ItemPosition profiles.

* ``segrec``: the (n, S) logits of a trained segment interest model (`segint train`), computed
  once with the model frozen in eval mode; the SegRec CTR model never updates it.
* ``itemposition``: the Task-1 ItemPosition baseline turned into logits of the same meaning.
  The interest model's exit distribution is ``softmax(-p)``, so a per-video exit profile
  ``q`` corresponds to ``p = -log q``. We use the smoothed profile (``ItemPosition+prior``,
  one pseudo-view of the global profile) because the raw per-video profile is 0 on most slots
  (``-log 0``); ``q`` is floored at ``1e-6``. Both sources then go through the same softmax
  over the real slots. (The reference instead fed Bernoulli 0/1 draws of ``1 - q`` as raw,
  unnormalised weights; keeping one integration isolates the effect of the weight source.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import baseline_scores
from segint.errors import SegintError
from segint.splits import SPLIT_METHODS, history_index

log = logging.getLogger(__name__)
PROFILE_FLOOR = 1e-6


def interest_run_config(run_dir: str | Path) -> Any:
    """The `training.config.TrainConfig` of an interest-model run (SegintError if not one)."""
    from training.checkpoint import load_run_config

    return load_run_config(run_dir)


def check_interest_split(run_dir: str | Path, split: str, seed: int, min_interactions: int) -> None:
    """Refuse an interest model trained on another split of the data.

    The interest model learns from exit slots, which nearly determine the effective-view label;
    if it had trained on SegRec's test rows, their frozen weights would leak the label.
    ``split`` is ``random_per_user`` / ``temporal`` (with ``seed``) or ``train_file``.
    """
    data = interest_run_config(run_dir).data
    if split in SPLIT_METHODS and data.split in SPLIT_METHODS:
        trained = (data.split, data.seed, data.min_interactions)
        if trained != (split, seed, min_interactions):
            raise SegintError(
                f"{run_dir} was trained on split {data.split} seed {data.seed} (min interactions "
                f"{data.min_interactions}), not {split} seed {seed} ({min_interactions}); train "
                "SegRec on the same split as its interest model"
            )
    elif (split in SPLIT_METHODS) != (data.split in SPLIT_METHODS):
        raise SegintError(
            f"{run_dir} was trained with data.split={data.split}, SegRec uses {split}: "
            "give both the same source (--data with the same split, or --train files)"
        )


def interest_logits(
    run_dir: str | Path,
    table: pl.DataFrame,
    rows: npt.ArrayLike | None = None,
    s_max: int | None = None,
    batch_size: int = 2048,
) -> npt.NDArray[np.float32]:
    """(n_rows, S) frozen interest logits of ``table[rows]`` (all rows when None).

    Histories come from the whole table with the interest model's own history length.
    """
    import torch

    from training.checkpoint import load_model
    from training.data import InteractionDataset
    from training.inference import predict_logits

    cfg = interest_run_config(run_dir)
    model, model_cfg, users, videos = load_model(run_dir, "cpu")
    if s_max is not None and model_cfg.s_max != s_max:
        raise SegintError(f"{run_dir} has s_max {model_cfg.s_max}, SegRec uses {s_max}")
    if "content" in model_cfg.modalities:
        raise SegintError(f"{run_dir} needs segment content features; SegRec reads logs only")
    idx = np.arange(table.height) if rows is None else np.asarray(rows, dtype=np.int64)
    history = history_index(table, cfg.data.history_len)
    data = InteractionDataset(table, history, idx, users, videos, model_cfg.s_max)
    log.info("interest logits of %d rows from %s", len(idx), run_dir)
    with torch.inference_mode():
        out = predict_logits(model, data, batch_size, "cpu")
    return out.astype(np.float32)


def itemposition_logits(
    fit: pl.DataFrame, table: pl.DataFrame, s_max: int, prior_strength: float = 1.0
) -> npt.NDArray[np.float32]:
    """(n, S) ``-log`` of each row's video exit profile, fitted on ``fit`` (training rows)."""
    if fit.height == 0:
        raise SegintError("no training rows to fit the ItemPosition profiles on")
    methods = baseline_scores(fit, table, s_max=s_max, prior_strength=prior_strength)
    profile = methods["ItemPosition+prior"][1]  # (n, S) exit distribution
    return (-np.log(np.maximum(profile, PROFILE_FLOOR))).astype(np.float32)
