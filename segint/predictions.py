"""Row-level predictions: one Parquet row per test view, so that anyone can recompute the
metrics, test significance (`segint compare`) or analyse errors without the models.

Columns (``S`` = s_max):

* ``user_id, video_id, time_ms, duration_ms, play_time_ms, n_segments`` from the log;
  ``exit_slot`` (the target ``V``), ``watch_ms`` (observed watch time, play time capped at the
  duration: XAUC's truth), ``cold`` (video not among the fitting rows), ``tie_seed`` (the
  seed of the tie-breaking permutation the report used);
* per method ``M`` (``SegInterest``, every baseline): ``M.scores`` (list of S floats, the
  interest scores the slots are ranked by), ``M.exit_dist`` (list of S floats, the exit
  distribution as evaluated: the model's is zero beyond ``N``; a baseline's profile may put
  mass there, which the strict protocol renormalises away), ``M.watch_ms`` (the served
  estimate: watch time of the median exit slot) and ``M.expected_watch_ms`` (the mean), both
  from the distribution over the ``N + 1`` real outcomes.

`metrics_from_frame` recomputes the report's numbers from such a file with the code
`segint evaluate` uses, the same seed and the same rows, so they match it exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import MethodScores
from segint.errors import SegintError
from segint.heads import expected_watch_ms
from segint.metrics import eligible_slots, evaluate_scores, renormalised
from segint.splits import cold_mask
from segint.watchtime import median_watch_ms, true_watch_ms

BASE_COLUMNS = (
    "user_id",
    "video_id",
    "time_ms",
    "duration_ms",
    "play_time_ms",
    "n_segments",
    "exit_slot",
    "watch_ms",
    "cold",
    "tie_seed",
)
SCORES, DIST = ".scores", ".exit_dist"


def predictions_frame(
    fit: pl.DataFrame, test: pl.DataFrame, methods: MethodScores, seed: int
) -> pl.DataFrame:
    """The predictions table of ``methods`` (name -> (scores, exit_dist), each (n, S))."""
    n_seg = test["n_segments"].to_numpy()
    dur = test["duration_ms"].to_numpy()
    cols: dict[str, pl.Series] = {
        c: test[c] for c in ("user_id", "video_id", "time_ms", "duration_ms", "play_time_ms")
    }
    cols["n_segments"] = test["n_segments"]
    cols["exit_slot"] = test["exit_slot"]
    cols["watch_ms"] = pl.Series(true_watch_ms(test["play_time_ms"].to_numpy(), dur))
    cols["cold"] = pl.Series(cold_mask(fit["video_id"].to_numpy(), test["video_id"].to_numpy()))
    cols["tie_seed"] = pl.Series(np.full(test.height, seed, dtype=np.int64))
    for name, (scores, dist) in methods.items():
        s = np.asarray(scores, dtype=np.float64)
        d = np.asarray(dist, dtype=np.float64)
        real = renormalised(d, eligible_slots(n_seg, d.shape[1], "strict"))
        cols[name + SCORES] = _list_column(s)
        cols[name + DIST] = _list_column(d)
        cols[name + ".watch_ms"] = pl.Series(median_watch_ms(real, dur))
        cols[name + ".expected_watch_ms"] = pl.Series(expected_watch_ms(real, dur))
    return pl.DataFrame({k: v.alias(k) for k, v in cols.items()})


def _list_column(a: npt.NDArray[np.float64]) -> pl.Series:
    return pl.Series(a).cast(pl.List(pl.Float64))


def write_predictions(frame: pl.DataFrame, path: str | Path) -> None:
    """Write the table (zstd Parquet), creating the parent folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(p, compression="zstd")


def read_predictions(path: str | Path) -> pl.DataFrame:
    """Read and check a predictions file; any problem is a `SegintError` naming the file."""
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise SegintError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
    missing = [c for c in BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise SegintError(f"{path}: not a predictions file, missing column(s) {missing}")
    if frame.height == 0:
        raise SegintError(f"{path}: no rows")
    return frame


def method_names(frame: pl.DataFrame) -> list[str]:
    """Methods present in a predictions table, in column order."""
    return [c[: -len(SCORES)] for c in frame.columns if c.endswith(SCORES)]


def method_arrays(
    frame: pl.DataFrame, method: str, path: str | Path = "predictions"
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(scores, exit_dist)`` of one method, each (n, S)."""
    if method + SCORES not in frame.columns:
        raise SegintError(
            f"{path}: no method {method!r}; it has {', '.join(method_names(frame)) or 'none'}"
        )
    return _matrix(frame[method + SCORES]), _matrix(frame[method + DIST])


def _matrix(col: pl.Series) -> npt.NDArray[np.float64]:
    if col.len() == 0:
        return np.zeros((0, 1))
    width = col.list.len()
    if width.n_unique() != 1:
        raise SegintError(f"column {col.name!r}: rows have different lengths")
    out: npt.NDArray[np.float64] = np.asarray(
        col.cast(pl.Array(pl.Float64, int(width[0]))).to_numpy(), dtype=np.float64
    )
    return out


def metrics_from_frame(
    frame: pl.DataFrame, method: str, protocol: str, rows: npt.NDArray[np.bool_] | None = None
) -> dict[str, float]:
    """A method's metrics on (a subset of) the file's rows, as `segint evaluate` reports them."""
    f = frame if rows is None else frame.filter(pl.Series(rows))
    scores, dist = method_arrays(f, method)
    return evaluate_scores(
        scores,
        dist,
        f["exit_slot"].to_numpy(),
        f["n_segments"].to_numpy(),
        protocol,
        int(f["tie_seed"][0]),
        duration_ms=f["duration_ms"].to_numpy(),
        watch_ms=f["watch_ms"].to_numpy(),
    )
