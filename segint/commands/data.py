"""`segint data prepare`: filter, de-duplicate and label interaction logs into Parquet.

Also the one home of the data options every command shares: the filter flags
(`add_filter_options`, `filters_from_args`) and the `segint.source.DataSource` of
``--data/--split/--seed`` or ``--train [--test]`` (`source_from_args`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from segint.data import FORMATS, Filters, write_prepared
from segint.errors import SegintError
from segint.source import DataSource


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that reads raw logs."""
    g = p.add_argument_group("filters (spec section 1; defaults are the reference's)")
    g.add_argument(
        "--s-max", type=int, default=40, help="slots per video; keeps duration < S_MAX*5 s"
    )
    g.add_argument("--min-play-ms", type=int, default=1, help="keep play_time_ms >= this")
    g.add_argument("--min-duration-ms", type=int, default=1, help="keep duration_ms >= this")
    g.add_argument(
        "--keep-unclicked", action="store_true", help="KuaiRand: keep is_click == 0 rows"
    )
    g.add_argument("--keep-duplicates", action="store_true", help="keep exact duplicate rows")


def filters_from_args(args: argparse.Namespace, s_max: int | None = None) -> Filters:
    """The `Filters` of the filter options (``s_max`` overrides ``--s-max``)."""
    try:
        return Filters(
            s_max=args.s_max if s_max is None else s_max,
            min_play_ms=args.min_play_ms,
            min_duration_ms=args.min_duration_ms,
            require_click=not args.keep_unclicked,
            drop_duplicates=not args.keep_duplicates,
        )
    except ValueError as e:
        raise SegintError(str(e)) from None


def source_from_args(args: argparse.Namespace) -> DataSource:
    """The `DataSource` of --data/--split/--seed/--min-interactions or --train [--test], with
    the filter options (baselines, evaluate, segrec)."""
    return DataSource(
        data=args.data,
        split=args.split,
        seed=args.seed,
        min_interactions=args.min_interactions,
        train=args.train,
        test=getattr(args, "test", None),
        format=args.format,
        filters=filters_from_args(args),
    )


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="prepare interaction logs")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))
    p = data_sub.add_parser("prepare", help="filter, de-duplicate and label logs into Parquet")
    p.add_argument("--input", action="append", required=True, help="log file (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="kuairand")
    p.add_argument("--out", required=True, help="output directory")
    add_filter_options(p)
    p.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    summary = write_prepared(args.input, args.format, args.out, filters_from_args(args))
    out = sys.stdout
    out.write(f"read {summary['rows_read']:,} rows from {len(args.input)} file(s)\n")
    for name, n in summary["dropped"].items():  # type: ignore[attr-defined]
        out.write(f"  dropped by {name:<10} {n:>12,}\n")
    out.write(
        f"kept {summary['rows_kept']:,} rows: {summary['users']:,} users, {summary['videos']:,} videos\n"
    )
    hist = summary["exit_slot_histogram"]
    total = max(1, sum(hist.values()))  # type: ignore[attr-defined]
    out.write("exit slot histogram (slot: rows, share):\n")
    for slot, n in hist.items():  # type: ignore[attr-defined]
        out.write(f"  {slot:>3}: {n:>10,}  {n / total:6.2%}\n")
    out.write(f"wrote {args.out}/interactions.parquet and summary.json\n")
    json.dumps(summary)  # fail loudly here, not later, if the summary is not serialisable
    return 0
