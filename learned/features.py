"""Per-view features shared by the tree-based learned baselines (hazard-gbdt, tpm, d2q).

Only these log columns are read: ``user_id, video_id, time_ms, duration_ms, n_segments`` of
the view itself, and ``exit_slot, play_time_ms`` of *other* views (the video's training rows
without the row's own view; the user's strictly earlier views). No outcome column of the view
itself (``is_like``, ``long_view``, ..., its own ``exit_slot`` or ``play_time_ms``) ever
enters; ``tests/learned/test_leaks.py`` proves it.

Features of a view (``S`` = s_max, ``N`` = its segment count):

* ``n_segments``, ``duration_ms``, ``hour`` (hour of day, UTC+8: KuaiRand's clock);
* the video's exit counts from the training rows, **leave-one-out** for a training row's own
  view (validation rows see the training rows; test rows see training + validation rows, as
  the position baselines do), smoothed toward the exit profile ``g^N`` of videos with the same
  ``N`` (also leave-one-out) with ``PRIOR`` pseudo-views: ``video_views``, ``video_first_exit``
  (P(exit = 0)), ``video_completion`` (P(exit = N)), ``video_mean_fraction`` (E[exit] / N), and
  the whole smoothed profile (n, S + 1) for slot-level features (`VideoStats.profile`);
* the user's strictly earlier views (in time, over fitting and test rows: the history
  `segint evaluate` gives the model): ``user_views``, ``user_mean_fraction`` (mean watched
  fraction), ``user_completion``, ``user_first_exit`` (NaN without earlier views);
* the KuaiRand side tables as codes (``video_type``, ``upload_type``, ``music_type``,
  ``tag``; ``user_active_degree``, the bucketed counts, ``onehot_feat*``): each value's rank
  among the column's values, entered as an ordered feature. LightGBM's categorical splits on
  them were worse (validation rows of the temporal split, seed 0: hazard-gbdt validation
  log-loss 0.27242 categorical vs 0.27205 ordered): the many-valued user columns overfit.

How a training row's video statistics leave its own view out is a setting (`ENCODINGS`):
``loo`` removes only the view itself, as issue 13 asks; but a leave-one-out mean moves
against the row's own outcome (its video's total is fixed, so a higher own exit means a
lower left-out profile there), a pattern the trees learn and that never holds for validation
or test rows. ``kfold`` leaves out the row's whole fold (``FOLDS`` random folds of the
training rows), whose statistics are independent of the row's outcome. `best_encoding` fits
a learner with each and keeps the one with the lower validation loss, recording both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from learned.base import LearnedInput, LearnedOutput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PRIOR = 8.0  # pseudo-views of the same-N profile added to every video's exit counts
HOUR_MS = 3_600_000
UTC_OFFSET_H = 8  # KuaiRand logs are Beijing time
ENCODINGS = ("loo", "kfold")
FOLDS = 5  # folds of the kfold encoding
VIDEO_SIDE = ("video_type", "upload_type", "music_type", "tag")
VIEW_COLUMNS = ("user_id", "video_id", "time_ms", "duration_ms", "n_segments")


@dataclass(frozen=True)
class ViewFeatures:
    """Feature matrices of the fitting and test rows and the smoothed video profiles."""

    names: list[str]  # column names of fit / test
    categorical: list[str]  # names LightGBM treats as categories (none: see the docstring)
    fit: FloatArray  # (n_fit, F)
    test: FloatArray  # (n_test, F)
    fit_profile: FloatArray  # (n_fit, S + 1) smoothed exit distribution of the row's video
    test_profile: FloatArray  # (n_test, S + 1)
    fit_length_profile: (
        FloatArray  # (n_fit, S + 1) the same-N profile g^N the video's is smoothed to
    )
    test_length_profile: FloatArray  # (n_test, S + 1)


def _outcome_counts(exits: IntArray, n_out: int) -> FloatArray:
    """(n, n_out) one-hot rows of the exit outcomes 0..n_out-1."""
    out = np.zeros((len(exits), n_out))
    out[np.arange(len(exits)), exits] = 1.0
    return out


def _group_sums(keys: IntArray, values: FloatArray, n_keys: int) -> FloatArray:
    out = np.zeros((n_keys, values.shape[1]))
    np.add.at(out, keys, values)
    return out


def _codes(
    values: npt.NDArray[np.int64], uniq: npt.NDArray[np.int64]
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Positions of ``values`` in the sorted ``uniq`` and whether each is present."""
    if len(uniq) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(uniq, values), len(uniq) - 1)
    return pos.astype(np.int64), uniq[pos] == values


def _left_out(keys: IntArray, values: FloatArray, groups: IntArray) -> FloatArray:
    """Per row, the sum of ``values`` over the rows sharing both its key and its group."""
    _, inverse = np.unique(np.column_stack([keys, groups]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return _group_sums(inverse, values, int(inverse.max()) + 1 if len(inverse) else 0)[inverse]


def smoothed_profiles(
    src: pl.DataFrame, rows: pl.DataFrame, s_max: int, groups: IntArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per row of ``rows``: (video profile, same-N profile, video view count) from ``src``.

    ``groups`` given: ``rows`` is ``src`` itself, and each row's statistics leave out every
    row of its group: ``groups = arange(n)`` is leave-one-out (the row's own view only);
    ``K`` fold ids give out-of-fold statistics. Profiles are over the ``S + 1`` outcomes
    (slot ``S`` = completion of an ``S``-segment video).
    """
    n_out = s_max + 1
    src_exit = src["exit_slot"].to_numpy().astype(np.int64)
    one_hot = _outcome_counts(src_exit, n_out)
    glob = one_hot.sum(axis=0)
    # Same-N counts.
    n_src = np.minimum(src["n_segments"].to_numpy().astype(np.int64), n_out)
    n_row = np.minimum(rows["n_segments"].to_numpy().astype(np.int64), n_out)
    cn = _group_sums(n_src, one_hot, n_out + 1)[n_row]
    # Video counts.
    uniq, vid_idx = np.unique(src["video_id"].to_numpy(), return_inverse=True)
    by_v = _group_sums(vid_idx.astype(np.int64), one_hot, len(uniq))
    pos, known = _codes(rows["video_id"].to_numpy(), uniq)
    cv = np.where(known[:, None], by_v[pos] if len(uniq) else 0.0, 0.0)
    glob_rows: FloatArray = np.broadcast_to(glob[None, :], cn.shape)
    if groups is not None:
        if rows.height != src.height:
            raise ValueError("groups need rows to be src itself")
        cn = cn - _left_out(n_src, one_hot, groups)
        cv = cv - _left_out(vid_idx.reshape(-1).astype(np.int64), one_hot, groups)
        glob_rows = glob[None, :] - _left_out(np.zeros(len(groups), np.int64), one_hot, groups)
    g = glob_rows / np.maximum(glob_rows.sum(axis=1, keepdims=True), 1.0)
    nn = cn.sum(axis=1, keepdims=True)
    length = np.where(nn > 0, cn / np.maximum(nn, 1.0), g)
    nv = cv.sum(axis=1, keepdims=True)
    video = (cv + PRIOR * length) / (nv + PRIOR)
    return video, length, nv[:, 0]


def user_history(frame: pl.DataFrame) -> FloatArray:
    """(n, 4) per row: the user's strictly earlier views' count, mean watched fraction,
    completion rate and first-segment exit rate (NaN rates without earlier views).

    ``frame`` holds every row whose outcome may serve as history; rows at the same
    ``time_ms`` as the current one are not earlier.
    """
    n = frame.height
    order = np.lexsort((frame["time_ms"].to_numpy(), frame["user_id"].to_numpy()))
    u = frame["user_id"].to_numpy()[order]
    t = frame["time_ms"].to_numpy()[order]
    dur = frame["duration_ms"].to_numpy().astype(np.float64)[order]
    play = frame["play_time_ms"].to_numpy().astype(np.float64)[order]
    ex = frame["exit_slot"].to_numpy()[order]
    nseg = frame["n_segments"].to_numpy()[order]
    vals = np.stack(
        [np.ones(n), np.minimum(play / np.maximum(dur, 1.0), 1.0), ex == nseg, ex == 0], axis=1
    ).astype(np.float64)
    cum = np.vstack([np.zeros((1, 4)), np.cumsum(vals, axis=0)])  # cum[i] = sum of rows < i
    new_user = np.r_[True, u[1:] != u[:-1]]
    new_time = new_user | np.r_[True, t[1:] != t[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    time_start = np.maximum.accumulate(np.where(new_time, np.arange(n), 0))
    before = cum[time_start] - cum[user_start]  # rows of this user strictly earlier in time
    count = before[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = before[:, 1:] / count[:, None]
    out = np.empty((n, 4))
    out[order] = np.column_stack([count, rates])
    return out


def _side_codes(
    ids: npt.NDArray[np.int64], table: pl.DataFrame | None, key: str, columns: list[str]
) -> tuple[FloatArray, list[str]]:
    """(n, K) integer codes (as floats; NaN = unknown id or empty value) of side columns:
    each value's dense rank among the table's values of that column."""
    if table is None:
        return np.zeros((len(ids), 0)), []
    cols = [c for c in columns if c in table.columns]
    coded = table.select(
        pl.col(key),
        *(
            pl.when(pl.col(c).cast(pl.String).fill_null("") == "")
            .then(None)
            .otherwise(pl.col(c).cast(pl.String))
            .rank("dense")
            .cast(pl.Float64)
            .alias(c)
            for c in cols
        ),
    ).sort(key)
    pos, known = _codes(ids, coded[key].to_numpy())
    values = coded.select(cols).to_numpy().astype(np.float64)
    out = np.full((len(ids), len(cols)), np.nan)
    out[known] = values[pos[known]]
    return out, cols


def view_features(data: LearnedInput, encoding: str = "loo") -> ViewFeatures:
    """Every feature of the fitting and test rows (see the module docstring).

    ``encoding``: how a training row's video statistics leave its own view out: ``loo``
    (leave-one-out) or ``kfold`` (out-of-fold over ``FOLDS`` random folds of the training
    rows, seeded by ``data.seed``).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    s = data.s_max
    fit, test = data.fit.select(_needed(data.fit)), data.test.select(_needed(data.test))
    train = fit.filter(pl.Series(~data.valid))
    # Video statistics: training rows (leave-one-out) for fitting rows, fit rows for test rows.
    fv, fl, fn = smoothed_profiles(train, fit, s)
    if encoding == "loo":
        groups = np.arange(train.height)
    else:
        groups = np.random.default_rng(data.seed).integers(0, FOLDS, train.height)
    tv, tl, tn = smoothed_profiles(train, train, s, groups)
    tr = np.flatnonzero(~data.valid)
    fv[tr], fl[tr], fn[tr] = tv, tl, tn
    xv, xl, xn = smoothed_profiles(fit, test, s)
    # User history over fitting and test rows.
    hist = user_history(pl.concat([fit, test]))  # same row order as `both` below
    parts = []
    for frame, prof, views, h in (
        (fit, fv, fn, hist[: fit.height]),
        (test, xv, xn, hist[fit.height :]),
    ):
        n_seg = frame["n_segments"].to_numpy().astype(np.int64)
        rows = np.arange(frame.height)
        slots = np.arange(s + 1)[None, :]
        mean_exit = (prof * slots).sum(axis=1)
        hour = ((frame["time_ms"].to_numpy() // HOUR_MS) + UTC_OFFSET_H) % 24
        base = np.column_stack(
            [
                n_seg,
                frame["duration_ms"].to_numpy(),
                hour,
                views,
                prof[:, 0],
                prof[rows, np.minimum(n_seg, s)],
                mean_exit / np.maximum(n_seg, 1),
                h,
            ]
        ).astype(np.float64)
        parts.append(base)
    both = pl.concat([fit, test])
    vside, vnames = _side_codes(
        both["video_id"].to_numpy(), data.video_table, "video_id", list(VIDEO_SIDE)
    )
    user_cols = (
        [] if data.user_table is None else [c for c in data.user_table.columns if c != "user_id"]
    )
    uside, unames = _side_codes(both["user_id"].to_numpy(), data.user_table, "user_id", user_cols)
    side = np.hstack([vside, uside])
    names = [
        "n_segments",
        "duration_ms",
        "hour",
        "video_views",
        "video_first_exit",
        "video_completion",
        "video_mean_fraction",
        "user_views",
        "user_mean_fraction",
        "user_completion",
        "user_first_exit",
        *vnames,
        *unames,
    ]
    return ViewFeatures(
        names=names,
        categorical=[],
        fit=np.hstack([parts[0], side[: fit.height]]),
        test=np.hstack([parts[1], side[fit.height :]]),
        fit_profile=fv,
        test_profile=xv,
        fit_length_profile=fl,
        test_length_profile=xl,
    )


VIDEO_ONLY = ("n_segments", "duration_ms", "video_views", "video_first_exit", "video_completion",
              "video_mean_fraction", *VIDEO_SIDE)  # fmt: skip


def video_only(feats: ViewFeatures) -> ViewFeatures:
    """The columns of ``feats`` that depend on the video alone (`VIDEO_ONLY`: N, duration, the
    video's exit statistics, its side codes); no hour, no user statistics or side codes."""
    cols = [i for i, n in enumerate(feats.names) if n in VIDEO_ONLY]
    return dataclasses.replace(
        feats,
        names=[feats.names[i] for i in cols],
        fit=feats.fit[:, cols],
        test=feats.test[:, cols],
    )


def _needed(frame: pl.DataFrame) -> list[str]:
    """The only columns features are computed from (outcomes only of other views)."""
    return [*VIEW_COLUMNS, "play_time_ms", "exit_slot"]


def best_encoding(
    data: LearnedInput, fit_one: Callable[[ViewFeatures], tuple[LearnedOutput, float]]
) -> LearnedOutput:
    """Fit with each encoding of `ENCODINGS`; keep the output with the lowest validation loss.

    ``fit_one`` fits on the training rows of the given features and returns its output and
    its loss on the validation rows. The kept output's settings gain ``encoding`` and
    ``validation_loss_by_encoding``.
    """
    fitted: dict[str, tuple[LearnedOutput, float]] = {}
    for encoding in ENCODINGS:
        fitted[encoding] = fit_one(view_features(data, encoding))
    best = min(ENCODINGS, key=lambda e: fitted[e][1])
    out = fitted[best][0]
    losses: dict[str, Any] = {e: round(float(v[1]), 6) for e, v in fitted.items()}
    out.settings = {"encoding": best, "validation_loss_by_encoding": losses, **out.settings}
    return out
