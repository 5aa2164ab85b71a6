"""`segint plot heatmap|calibration`: figures from a trained model or its predictions.

``calibration`` draws the reliability and watch-time report of predictions files
(`segint.calibration_report`). ``heatmap``: the segment-interest heatmap of a user's view(s)
of a video (Figure 6).

    segint plot heatmap --model runs/x --data log.csv --format kuairand \\
        --user 123 --video 456 [--time T] --out heatmap.png

The views are the log rows of video ``V`` by the given user(s) (``--user`` takes several ids,
giving one row per view of each; ``--time`` picks one view by its ``time_ms``). Each view is
scored exactly as in evaluation: its history is the user's log rows strictly earlier in time
(`segint.splits.history_index`), ids go through the model's training vocabularies (an id it
never saw is its "unknown" row), and a content model reads its features from ``--features``
(default: the store it was trained with). The log is filtered as for training, with the
model's ``s_max``.

Colour: ``--score interest`` (default) is ``σ(logit)`` per outcome slot, the model's interest
in each segment and in finishing; ``--score exit`` is the exit distribution (``softmax(-logits)``
over the ``N + 1`` outcomes). Unknown user or video, or no matching view, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segint.commands.data import add_filter_options, filters_from_args
from segint.data import FORMATS, load_table
from segint.errors import SegintError

log = logging.getLogger(__name__)
SCORES = {
    "interest": "segment interest σ(logit)",
    "exit": "P(exit in slot) = softmax(−logit)",
}


def register(sub: Any) -> None:
    plot = sub.add_parser("plot", help="figures from a trained model")
    psub = plot.add_subparsers(dest="plot_command", metavar="FIGURE", parser_class=type(plot))
    p = psub.add_parser("heatmap", help="segment-interest heatmap of a user's view(s) of a video")
    p.add_argument("--model", required=True, type=Path, help="run directory of `segint train`")
    p.add_argument("--data", required=True, help="log holding the view(s) and their histories")
    p.add_argument("--format", choices=FORMATS, help="raw log format; omit for prepared data")
    p.add_argument("--user", required=True, type=int, nargs="+", help="user id(s)")
    p.add_argument("--video", required=True, type=int, help="video id")
    p.add_argument("--time", type=int, help="time_ms of one view (default: every view)")
    p.add_argument("--features", type=Path, help="feature store (default: the training run's)")
    p.add_argument("--score", choices=list(SCORES), default="interest", help="what colour shows")
    p.add_argument("--max-rows", type=int, default=12, help="most recent views drawn at most")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    add_filter_options(p)
    p.set_defaults(func=run_heatmap, s_max=None)
    c = psub.add_parser(
        "calibration",
        help="reliability of completion_probability, watch-time MAE by video length",
    )
    c.add_argument("predictions", nargs="+", type=Path, help="predictions file(s) (pooled)")
    c.add_argument(
        "--methods",
        nargs="+",
        default=["SegInterest", "SegInterest(T=1)", "ItemPosition+prior|N", "AllPosition|N"],
        help="methods to draw (default %(default)s; those absent from the files are skipped)",
    )
    c.add_argument("--bins", type=int, default=10, help="reliability bins (default 10)")
    c.add_argument("--out", required=True, type=Path, help="folder to write the report into")
    c.set_defaults(func=run_calibration)


def select_views(
    table: pl.DataFrame, users: list[int], video: int, time_ms: int | None
) -> np.ndarray:
    """Row indices of ``table`` holding the views of ``video`` by ``users`` (at ``time_ms``).

    Raises:
        SegintError: an id absent from the log, or no view matching all the criteria.
    """
    user_col, video_col = table["user_id"].to_numpy(), table["video_id"].to_numpy()
    missing = [u for u in users if not (user_col == u).any()]
    if missing:
        raise SegintError(f"user {missing[0]} is not in the log (after filtering)")
    if not (video_col == video).any():
        raise SegintError(f"video {video} is not in the log (after filtering)")
    match = np.isin(user_col, users) & (video_col == video)
    if not match.any():
        who = f"user {users[0]}" if len(users) == 1 else f"users {users}"
        raise SegintError(f"{who} never viewed video {video} in the log")
    if time_ms is not None:
        times = table["time_ms"].to_numpy()
        at = match & (times == time_ms)
        if not at.any():
            seen = ", ".join(str(t) for t in times[match][:5])
            raise SegintError(f"no view of video {video} at time {time_ms} (views at: {seen})")
        match = at
    return np.flatnonzero(match)


def _row_label(user: int, time_ms: int, exit_slot: int, n: int, known: bool) -> str:
    when = datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    ended = "watched to the end" if exit_slot == n else f"left in segment {exit_slot}"
    return f"user {user}{'' if known else ' (new)'}, {when}: {ended}"


def run_heatmap(args: argparse.Namespace) -> int:
    from segint.heads import exit_distribution, outcome_mask
    from segint.plots import segment_heatmap
    from segint.splits import history_index
    from training.checkpoint import load_model, load_run_config
    from training.data import InteractionDataset, open_content_store
    from training.inference import predict_logits

    if args.max_rows < 1:
        raise SegintError(f"--max-rows must be >= 1, got {args.max_rows}")
    if args.out.suffix.lower() != ".png":
        raise SegintError(f"--out {args.out}: the heatmap is written as PNG (use a .png name)")
    cfg = load_run_config(args.model)
    model, model_cfg, users, videos = load_model(args.model, "cpu")
    if args.s_max is None:
        args.s_max = model_cfg.s_max
    elif args.s_max != model_cfg.s_max:
        raise SegintError(f"--s-max {args.s_max} differs from the model's s_max {model_cfg.s_max}")
    store = open_content_store(
        args.features or cfg.features.store, model_cfg, cfg.features.l1_normalize
    )
    table = load_table(args.data, args.format, filters_from_args(args))
    rows = select_views(table, args.user, args.video, args.time)
    if len(rows) > args.max_rows:
        log.warning("%d matching views; drawing the %d most recent", len(rows), args.max_rows)
        times = table["time_ms"].to_numpy()[rows]
        rows = np.sort(rows[np.argsort(times, kind="stable")[-args.max_rows :]])

    history = history_index(table, cfg.data.history_len)  # (n, H): strictly earlier rows
    data = InteractionDataset(table, history, rows, users, videos, model_cfg.s_max, store)
    logits = predict_logits(model, data, 256, "cpu").astype(np.float64)  # (R, S)
    exit_slots, n_seg = data.targets()
    dist = exit_distribution(logits, outcome_mask(n_seg, model_cfg.s_max))  # (R, S)
    values = 1.0 / (1.0 + np.exp(-logits)) if args.score == "interest" else dist

    view = table[rows]
    known_users = users.lookup(view["user_id"].to_numpy()) > 0
    labels = [
        _row_label(u, t, int(e), int(n), bool(k))
        for u, t, e, n, k in zip(
            view["user_id"].to_list(), view["time_ms"].to_list(), exit_slots, n_seg, known_users,
            strict=True,
        )
    ]  # fmt: skip
    duration_s = float(view["duration_ms"].to_numpy().max()) / 1000
    who = f"user {args.user[0]}" if len(args.user) == 1 else f"{len(args.user)} users"
    new_video = "" if videos.lookup([args.video])[0] > 0 else " (new to the model)"
    title = (
        f"{who} · video {args.video}{new_video} · {duration_s:.1f} s, "
        f"{int(n_seg.max())} segments · model {args.model.name}"
    )
    path = segment_heatmap(
        values,
        n_seg,
        exit_slots,
        dist.argmax(axis=1),
        labels,
        title,
        SCORES[args.score],
        args.out,
    )
    sys.stdout.write(f"wrote {path} ({len(rows)} view{'s' if len(rows) > 1 else ''})\n")
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    """`segint plot calibration PRED.parquet [...] --out DIR` (`segint.calibration_report`)."""
    from segint.calibration_report import calibration_tables, write_report
    from segint.predictions import method_names, read_predictions

    if args.bins < 2:
        raise SegintError(f"--bins must be >= 2, got {args.bins}")
    frames = [read_predictions(p) for p in args.predictions]
    common = set(method_names(frames[0])).intersection(*(method_names(f) for f in frames[1:]))
    methods = [m for m in args.methods if m in common]
    if not methods:
        raise SegintError(
            f"none of {args.methods} is in every file (they have {sorted(common) or 'none'})"
        )
    keep = ["exit_slot", "n_segments", "tie_seed"]
    cols = keep + [c for m in methods for c in (m + ".scores", m + ".exit_dist")]
    frame = pl.concat([f.select(cols) for f in frames])
    title = ", ".join(p.name for p in args.predictions)
    for path in write_report(calibration_tables(frame, methods, args.bins), args.out, title):
        sys.stdout.write(f"wrote {path}\n")
    return 0
