"""`segint compare FILE.parquet [FILE2 ...] A B`: paired differences ``A - B`` with bootstrap
standard errors and a win/tie/loss verdict at 2 SE (`segint.compare`).

    segint compare runs/eval_temporal.parquet runs/eval_random.parquet \\
        SegInterest "ItemPosition+prior|N" [--cold] [--bootstrap 1000] [--json out.json]

The files are predictions of `segint evaluate --predictions` or `segint baselines
--predictions`; several files (splits, seeds) are pooled with a bootstrap stratified by file.
``--cold`` keeps only cold rows (video unseen in the fitting rows); their tie-breaking
permutation is then drawn over the cold rows, as the report's ``*_cold`` sections draw it.
``--min-history K --history-data LOG [--history-data LOG2] --format F`` keeps only rows of
users with at least ``K`` views strictly earlier in time in the log(s) (any split, the
default filters: the views the model's history inputs count; `training.history_subset`), a
cut on counts, never on outcomes; for a later week give both files. Both filters re-draw the
tie-breaking over the rows kept. ``docs/results/user_gain.sh`` runs the usual subsets.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from segint.commands import check_bootstrap
from segint.data import FORMATS
from segint.errors import SegintError
from segint.source import ORDER


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="paired differences of two methods, bootstrap SE")
    p.add_argument(
        "items",
        nargs="+",
        metavar="FILE.parquet [FILE2 ...] A B",
        help="predictions file(s), then the two method names",
    )
    p.add_argument("--cold", action="store_true", help="only cold rows (unseen videos)")
    p.add_argument(
        "--min-history",
        type=int,
        help="only rows of users with at least this many strictly earlier views in --history-data",
    )
    p.add_argument(
        "--history-data",
        action="append",
        default=[],
        help="log(s) the earlier views are counted in (repeatable; with --min-history)",
    )
    p.add_argument(
        "--format", choices=FORMATS, help="raw format of --history-data; omit for prepared data"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="replicates (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", type=Path, help="write the comparison as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segint.compare import compare, format_rows
    from segint.predictions import read_predictions

    if len(args.items) < 3:
        raise SegintError("give at least one predictions file, then methods A and B")
    check_bootstrap(args.bootstrap, none_allowed=False)
    *paths, a, b = args.items
    if a == b:
        raise SegintError(f"methods A and B are both {a!r}")
    if args.min_history is not None and (args.min_history < 1 or not args.history_data):
        raise SegintError("--min-history needs a count >= 1 and --history-data LOG")
    if args.history_data and args.min_history is None:
        raise SegintError("--history-data is used with --min-history K")
    views = _earlier_views(args) if args.min_history is not None else None
    frames, skipped = [], []
    for path in paths:
        frame = read_predictions(path)
        if args.cold:
            frame = frame.filter(pl.col("cold"))
        if views is not None:
            frame = _long_histories(frame, views, args.min_history, path)
        if frame.height == 0:  # a file without such rows adds nothing to the pooled rows
            skipped.append(str(path))
            sys.stdout.write(f"skipped {path}: no {_subset(args)}\n")
            continue
        frames.append((path, frame))
    if not frames:
        raise SegintError(f"no {_subset(args)} in any of the {len(paths)} file(s)")
    rows = compare(
        frames, a, b, n_boot=args.bootstrap, seed=args.seed, progress=not args.no_progress
    )
    n_rows = sum(f.height for _, f in frames)
    sys.stdout.write(format_rows(rows, a, b, n_rows, len(frames), args.bootstrap) + "\n")
    if args.json is not None:
        out = {
            "A": a,
            "B": b,
            "files": [str(p) for p, _ in frames],
            "skipped": skipped,
            "rows": n_rows,
            "cold_only": args.cold,
            "min_history": args.min_history,
            "history_data": [str(p) for p in args.history_data],
            "bootstrap": args.bootstrap,
            "comparisons": [asdict(r) | {"verdict": r.verdict} for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


KEYS = ["user_id", "video_id", "time_ms"]


def _earlier_views(args: argparse.Namespace) -> pl.DataFrame:
    """(user, video, time, views): each logged view's count of strictly earlier views of its
    user, capped at ``--min-history``, over the ``--history-data`` logs together."""
    from segint.data import Filters, load_table
    from training.history_subset import earlier_views

    tables = [load_table(path, args.format, Filters()) for path in args.history_data]
    table = pl.concat(tables).sort(ORDER) if len(tables) > 1 else tables[0]
    return earlier_views(table, args.min_history).unique(subset=KEYS, keep="first")


def _long_histories(
    frame: pl.DataFrame, views: pl.DataFrame, k: int, path: str | Path
) -> pl.DataFrame:
    """The rows of ``frame`` whose user had at least ``k`` earlier views."""
    joined = frame.join(views, on=KEYS, how="left", maintain_order="left")
    missing = joined["views"].null_count()
    if missing:
        raise SegintError(f"{path}: {missing:,} rows are not in --history-data")
    return joined.filter(pl.col("views") >= k).drop("views")


def _subset(args: argparse.Namespace) -> str:
    """The rows kept, in words."""
    words = ["cold rows"] if args.cold else ["rows"]
    if args.min_history is not None:
        words.append(f"of users with >= {args.min_history} earlier views")
    return " ".join(words)
