"""`segint baselines`: evaluate the position baselines on a split or on a train/test file pair."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from segint.baselines import baseline_scores
from segint.commands.data import add_filter_options, filters_from_args
from segint.data import FORMATS, load_table
from segint.errors import SegintError
from segint.report import evaluate_methods, format_table
from segint.splits import SPLIT_METHODS, TEST, VALID, assign_split


def add_source_options(p: argparse.ArgumentParser) -> None:
    """--data/--split or --train/--test, shared with `segint evaluate`."""
    p.add_argument("--data", help="one log to split (with --split)")
    p.add_argument("--split", choices=SPLIT_METHODS, default="random_per_user")
    p.add_argument("--seed", type=int, default=0, help="split and tie-breaking seed")
    p.add_argument("--min-interactions", type=int, default=1, help="drop users with fewer rows")
    p.add_argument("--train", help="training log (with --test)")
    p.add_argument("--test", help="test log (with --train)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="raw log format; omit for prepared data (`segint data prepare`)",
    )
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    add_filter_options(p)


def load_fit_test(args: argparse.Namespace) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows to fit statistics on (train, plus validation for a split) and rows to test on."""
    filters = filters_from_args(args)
    if args.data and (args.train or args.test):
        raise SegintError("give either --data (with --split) or --train and --test, not both")
    if args.data:
        df = load_table(args.data, args.format, filters)
        split = assign_split(df, args.split, seed=args.seed, min_interactions=args.min_interactions)
        fit = df.filter(pl.Series((split >= 0) & (split <= VALID)))
        test = df.filter(pl.Series(split == TEST))
    elif args.train and args.test:
        fit = load_table(args.train, args.format, filters)
        test = load_table(args.test, args.format, filters)
    else:
        raise SegintError("give --data FILE, or --train FILE and --test FILE")
    if fit.height == 0 or test.height == 0:
        raise SegintError(f"empty split: {fit.height} fitting rows, {test.height} test rows")
    return fit, test


def write_report(result: dict[str, Any], path: Path | None) -> None:
    sys.stdout.write(format_table(result) + "\n")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        sys.stdout.write(f"wrote {path}\n")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "baselines", help="evaluate Random/AllPosition/UserPosition/ItemPosition(+prior)"
    )
    add_source_options(p)
    p.add_argument(
        "--prior-strength", type=float, default=1.0, help="ItemPosition+prior pseudo-views"
    )
    p.add_argument("--bernoulli", action="store_true", help="Bernoulli-drawn scores (reference)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.prior_strength < 0:
        raise SegintError(f"--prior-strength must be >= 0, got {args.prior_strength}")
    fit, test = load_fit_test(args)
    methods = baseline_scores(
        fit,
        test,
        s_max=args.s_max,
        seed=args.seed,
        prior_strength=args.prior_strength,
        bernoulli=args.bernoulli,
    )
    write_report(evaluate_methods(fit, test, methods, seed=args.seed), args.json)
    return 0
