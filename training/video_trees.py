"""Fit the per-video exit table the service mixes into the network's distribution
(`segint.video_table`; ``optim.video_trees`` of `segint train`, ``--video-trees`` of
`segint evaluate`).

The learner is ``hazard-gbdt`` (`learned.hazard_gbdt`) on the features that depend on the
video alone (`learned.features.video_only`: N, duration, the video's smoothed exit statistics,
its side codes), fitted exactly as `segint baselines --learned hazard-gbdt` fits it: on the
training rows, its boosting stopped on the validation rows, the video statistics' encoding
(``loo`` / ``kfold``) chosen by validation log-loss. Each vocabulary video is then scored as a
test row is: its statistics from training + validation rows, its ``N`` and duration those of
its latest fitting row. No test row is read.

Measured on validation rows before it was served (docs/results/user-signal.md, rounds 6-7):
mixed 0.5 / 0.5 with the network it ties the full ``hazard-gbdt`` on every metric and improves
the network's MAE and exit NLL; its ranking stays the network's. On test rows (round 9, 3
seeds x 2 splits pooled) the served mixture beats the network alone on NDCG@5 and served MAE.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import numpy.typing as npt
import polars as pl

from learned.base import LearnedInput
from learned.features import best_encoding, video_only
from learned.hazard_gbdt import fit_features
from segint.errors import SegintError
from segint.video_table import VideoTable
from segint.vocab import UNKNOWN, Vocab

log = logging.getLogger(__name__)


def video_rows(fit: pl.DataFrame, videos: Vocab) -> tuple[pl.DataFrame, npt.NDArray[np.int64]]:
    """One pseudo view per vocabulary video found in ``fit``: its latest fitting row's video,
    duration and N, with an outside user (-1) after every fitting row (the features used read
    neither), and the vocabulary row of each."""
    latest = (
        fit.select("video_id", "duration_ms", "n_segments", "time_ms")
        .sort("time_ms", maintain_order=True)
        .unique("video_id", keep="last", maintain_order=True)
    )
    idx = videos.lookup(latest["video_id"].to_numpy())
    keep = idx != UNKNOWN
    rows = latest.filter(pl.Series(keep))
    t_end = int(fit["time_ms"].max()) + 1  # type: ignore[arg-type]
    pseudo = rows.select(
        pl.lit(-1, pl.Int64).alias("user_id"),
        pl.col("video_id"),
        pl.lit(t_end, pl.Int64).alias("time_ms"),
        pl.col("duration_ms"),
        pl.col("n_segments"),
        pl.lit(0, pl.Int64).alias("play_time_ms"),
        pl.lit(0, pl.Int64).alias("exit_slot"),
    )
    return pseudo.cast({c: fit.schema[c] for c in pseudo.columns}), idx[keep]


def fit_video_table(
    fit: pl.DataFrame,
    valid: npt.NDArray[np.bool_],
    videos: Vocab,
    s_max: int,
    weight: float,
    seed: int,
    threads: int = 1,
    video_side: pl.DataFrame | None = None,
) -> VideoTable:
    """The per-video table of a run's vocabulary from its fitting rows ``fit`` (``valid``: the
    validation rows among them, which stop the boosting), mixed with share ``weight``."""
    start = time.perf_counter()
    if not valid.any() or valid.all():
        raise SegintError(
            f"the video table needs training and validation rows, got {int((~valid).sum())} "
            f"and {int(valid.sum())}"
        )
    pseudo, idx = video_rows(fit, videos)
    data = LearnedInput(
        fit=fit, valid=valid, test=pseudo, s_max=s_max, seed=seed, video_table=video_side,
        threads=threads,
    )  # fmt: skip
    out = best_encoding(data, lambda feats: fit_features(data, video_only(feats)))
    assert out.exit_dist is not None
    n = pseudo["n_segments"].to_numpy().astype(np.int64)
    dist = np.zeros((len(videos), s_max))
    dist[idx] = out.exit_dist
    # hazard-gbdt has no column for the completion of an N = S video; the network spreads
    # that row over its S slots, and so does the table (every row sums to 1).
    dist[idx] /= dist[idx].sum(axis=1, keepdims=True)
    n_table = np.zeros(len(videos), np.int64)
    n_table[idx] = n
    meta = {
        "learner": "hazard-gbdt on the video's own features (learned.features.VIDEO_ONLY)",
        "fitted_on": f"{int((~valid).sum())} training rows, stopped on {int(valid.sum())} "
        "validation rows; statistics of both",
        "videos": int(len(idx)),
        "side_table": video_side is not None,
        "seed": seed,
        "settings": out.settings,
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info(
        "video table: %d videos, weight %.2f, %s encoding, %d rounds (%.0f s)",
        len(idx), weight, out.settings.get("encoding"), out.settings.get("best_iteration", -1),
        meta["seconds"],
    )  # fmt: skip
    return VideoTable(dist=dist, n_segments=n_table, weight=weight, meta=meta)
