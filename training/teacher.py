"""Out-of-fold teacher exit distributions for distillation (``optim.distill``).

The interest model's network sees one exit per training view: a noisy label. The learned
baseline ``hazard-gbdt`` (`learned.hazard_gbdt`) turns the same log into a full exit
distribution per view. With ``optim.distill = w > 0`` each training row's loss gains
``w * CE(teacher, model)``, the cross-entropy of the model's exit distribution under the
teacher's, and the served graph is unchanged: the teacher exists only in training.

**No row teaches itself.** The training rows are split into the count folds of
`training.folds.count_folds` (``K = model.count_folds``). For fold ``k`` the teacher is fitted
on the training rows of the other folds, early-stopped on a seeded 10% of those rows, and
scores fold ``k``; its video statistics come from the other folds only. A row's exit does
reach the teacher of its own fold in one way, as it reaches the model: as history, through
the user-history features of the same user's later views in other folds (and those views'
fitted effect), never as the row's own feature or label (tests/training/test_distill.py).
No validation or test row enters any teacher fit, so the validation rows that choose the
model's step stay unseen.

Fits take about a minute each on one core (K of them per run), so the teacher is cached:
``SEGINT_TEACHER_CACHE`` (default ``~/.cache/segint/teacher``) holds one ``.npy`` per
(table rows, training rows, K, seed, S, side tables) content hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from training.folds import count_folds

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float32]
INNER_VALID = 0.1  # share of a fold's fitting rows that only stops the teacher's boosting
KEY_COLUMNS = ("user_id", "video_id", "time_ms", "n_segments", "exit_slot")


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "segint" / "teacher"
    return Path(os.environ.get("SEGINT_TEACHER_CACHE", str(default)))


def _key(
    table: pl.DataFrame,
    train_rows: npt.NDArray[np.int64],
    k: int,
    seed: int,
    s: int,
    side: tuple[pl.DataFrame | None, ...],
) -> str:
    h = hashlib.sha256()
    for c in KEY_COLUMNS:
        h.update(np.ascontiguousarray(table[c].to_numpy()).tobytes())
    for t in side:  # the side tables' contents, or their absence
        h.update(b"none" if t is None else t.hash_rows(seed=0).to_numpy().tobytes())
    h.update(np.ascontiguousarray(train_rows, dtype=np.int64).tobytes())
    h.update(f"hazard-gbdt/kfold k={k} seed={seed} s={s} inner={INNER_VALID}".encode())
    return h.hexdigest()[:24]


def oof_teacher(
    table: pl.DataFrame,
    train_rows: npt.ArrayLike,
    s_max: int,
    k: int,
    seed: int,
    threads: int = 1,
    video_table: pl.DataFrame | None = None,
    user_table: pl.DataFrame | None = None,
) -> FloatArray:
    """(table.height, S) teacher exit distributions; rows that are not training rows are NaN.

    Row ``r`` of fold ``f`` gets the distribution of a ``hazard-gbdt`` fitted on the training
    rows outside fold ``f`` (module docstring). Columns follow `learned.base.LearnedOutput`'s
    ``exit_dist``: slot ``N`` is the completion outcome when ``N < S``.
    """
    rows = np.asarray(train_rows, dtype=np.int64)
    path = cache_dir() / f"{_key(table, rows, k, seed, s_max, (video_table, user_table))}.npy"
    if path.is_file():
        log.info("teacher: cached %s", path)
        out: FloatArray = np.load(path)
        return out
    from learned.base import LearnedInput
    from learned.features import view_features
    from learned.hazard_gbdt import fit_features

    folds = count_folds(table, rows, k, seed)[rows]
    out = np.full((table.height, s_max), np.nan, dtype=np.float32)
    rng = np.random.default_rng(seed)
    for f in range(k):
        fit_rows, test_rows = rows[folds != f], rows[folds == f]
        data = LearnedInput(
            fit=table[fit_rows],
            valid=rng.random(len(fit_rows)) < INNER_VALID,
            test=table[test_rows],
            s_max=s_max,
            seed=seed,
            video_table=video_table,
            user_table=user_table,
            threads=threads,
        )
        fitted, loss = fit_features(data, view_features(data, "kfold"))
        assert fitted.exit_dist is not None
        out[test_rows] = fitted.exit_dist
        log.info(
            "teacher fold %d/%d: %d fitting rows, %d scored, inner log-loss %.5f, %d rounds",
            f + 1, k, len(fit_rows), len(test_rows), loss, fitted.settings["best_iteration"],
        )  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
    except OSError as e:  # a read-only home (a container) costs a refit next time, nothing else
        log.warning("teacher: not cached (%s)", e)
    return out
