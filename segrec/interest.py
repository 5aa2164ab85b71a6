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
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import baseline_scores
from segint.errors import SegintError
from segint.splits import SPLIT_METHODS, TRAIN, history_index

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
    ``split`` is ``random_per_user`` / ``temporal`` (with ``seed``) or ``train_file``. The
    temporal split ignores the seed, so one temporal interest model serves SegRec runs of any
    seed (their seeds then vary only SegRec's own initialisation and shuffling).
    """
    data = interest_run_config(run_dir).data
    if split == "temporal" and data.split == "temporal":
        return  # the temporal split depends on neither the seed nor min_interactions
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


CROSSFIT_FILE = "crossfit.json"


def fold_ids(n_rows: int, k: int, seed: int) -> npt.NDArray[np.int64]:
    """(n_rows,) fold 0..k-1 of each training row: a seeded permutation dealt round-robin."""
    if k < 2:
        raise SegintError(f"cross-fitting needs at least 2 folds, got {k}")
    if n_rows < k:
        raise SegintError(f"{n_rows} training rows cannot be split into {k} folds")
    folds = np.empty(n_rows, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n_rows)] = np.arange(n_rows) % k
    return folds


def crossfit_logits(
    run_dir: str | Path,
    table: pl.DataFrame,
    split: npt.NDArray[np.int8],
    k: int,
    cache_dir: str | Path,
    max_epochs: int | None = None,
    progress: bool = False,
) -> npt.NDArray[np.float32]:
    """(n_train, S) out-of-fold interest logits of the training rows (``split == 0``), in order.

    The training rows are dealt into ``k`` folds (`fold_ids`, seeded by the interest run's
    split seed); fold ``f``'s logits come from an interest model trained with the interest
    run's own config on the other ``k - 1`` folds (validated on the split's validation rows,
    fold ``f`` left as history only). Its vocabularies and exit-count prior therefore never
    saw a row it scores: no training row's features contain its own exit. ``max_epochs``
    (default: the run's) caps the fold models' epochs.

    Fold models are cached in ``cache_dir/fold<f>`` with a key of the training rows, ``k`` and
    the config, and their out-of-fold logits in ``cache_dir/oof_logits.npy``; a matching cache
    is reused (every backbone and mode of one split shares it).
    """
    import hashlib
    import json
    from dataclasses import replace

    from training.train import train

    cfg = interest_run_config(run_dir)
    if max_epochs is not None:
        cfg = replace(cfg, optim=replace(cfg.optim, max_epochs=max_epochs))
    train_rows = np.flatnonzero(split == TRAIN)
    folds = fold_ids(len(train_rows), k, cfg.data.seed)
    digest = hashlib.sha256(train_rows.tobytes() + table["exit_slot"].to_numpy().tobytes())
    key = {"k": k, "rows": digest.hexdigest(), "config": cfg.to_dict()}
    oof_file, oof_key = Path(cache_dir) / "oof_logits.npy", Path(cache_dir) / "oof_key.json"
    if oof_file.is_file() and oof_key.is_file() and json.loads(oof_key.read_text()) == key:
        cached_oof: npt.NDArray[np.float32] = np.load(oof_file)
        if cached_oof.shape == (len(train_rows), cfg.data.s_max):
            return cached_oof
    out = np.zeros((len(train_rows), cfg.data.s_max), dtype=np.float32)
    for f in range(k):
        fold_dir = Path(cache_dir) / f"fold{f}"
        key_file = fold_dir / CROSSFIT_FILE
        cached = key_file.is_file() and json.loads(key_file.read_text()) == {**key, "fold": f}
        if not cached or not (fold_dir / "model.pt").is_file():
            fold_split = split.copy()
            fold_split[train_rows[folds == f]] = -1  # history only
            log.info("cross-fit fold %d/%d: training on %d rows", f + 1, k, int((folds != f).sum()))
            key_file.unlink(missing_ok=True)
            train(cfg, table, fold_split, fold_dir, device="cpu", progress=progress)
            key_file.write_text(json.dumps({**key, "fold": f}))
        held = train_rows[folds == f]
        out[folds == f] = interest_logits(fold_dir, table, held, s_max=cfg.data.s_max)
    tmp = oof_file.with_name(f".oof_logits.{os.getpid()}.npy")  # atomic: runs may share a cache
    np.save(tmp, out)
    os.replace(tmp, oof_file)
    oof_key.write_text(json.dumps(key))
    return out
