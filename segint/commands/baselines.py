"""`segint baselines`: evaluate the position baselines on a split or on a train/test file pair.

``ItemPosition+prior|N``'s pseudo-view count ``a`` is chosen on the validation rows (fitted on
the training rows alone, best strict NDCG@5 over ``--prior-grid``) unless
``--prior-strength-n`` fixes it; the validation rows are the split's (``--data``) or the last
10% by time of ``--train FILE``, the rows `segint train` validates on. The final profiles are
fitted on training + validation rows. The report's ``settings`` entry records ``a``, the grid
and which rows chose it. ``--predictions FILE.parquet`` writes one row per test view
(`segint.predictions`).

``--learned NAME,...`` adds learned baselines (package ``learned``, imported only then): each
is fitted on the training rows, early-stopped on the same validation rows, and appears in the
report under its name, its ``settings`` entry recording what it chose, on which rows, and its
training seconds. They get the KuaiRand side tables (``--video-table``, ``--user-table``; the
bundled ones by default for a KuaiRand log, raw or prepared, none for other formats;
``--no-side-tables`` for none).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.baselines import PRIOR_GRID, MethodScores, baseline_scores, choose_prior_strength
from segint.commands import finite_float
from segint.commands.data import add_filter_options, source_from_args
from segint.data import FORMATS, log_format
from segint.errors import SegintError
from segint.report import evaluate_methods, format_table
from segint.splits import SPLIT_METHODS, TEST, TRAIN, VALID
from training.side import USER_TABLE, VIDEO_TABLE


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


def load_fit_test(
    args: argparse.Namespace,
) -> tuple[pl.DataFrame, pl.DataFrame, npt.NDArray[np.bool_], str]:
    """Rows to fit statistics on (train, plus validation for a split), rows to test on, which
    fitting rows validate, and those validation rows in words.

    With ``--train A --test B`` the rows of B also in A are dropped. The source's provenance
    (`segint.provenance`) is left in ``args.provenance`` for `report_methods`.
    """
    if args.data is None and not (args.train and args.test):
        raise SegintError("give --data FILE, or --train FILE and --test FILE")
    loaded = source_from_args(args).load()
    loaded.print_overlap()
    fit_rows = loaded.rows(TRAIN, VALID)
    fit, test = loaded.table[fit_rows], loaded.table[loaded.rows(TEST)]
    valid = loaded.split[fit_rows] == VALID
    if fit.height == 0 or test.height == 0:
        raise SegintError(f"empty split: {fit.height} fitting rows, {test.height} test rows")
    args.provenance = loaded.provenance
    return fit, test, valid, f"{loaded.valid_where} ({int(valid.sum()):,} rows)"


def add_baseline_options(p: argparse.ArgumentParser) -> None:
    """Prior strengths of the smoothed baselines, shared with `segint evaluate`."""
    p.add_argument(
        "--prior-strength", type=finite_float, default=1.0, help="ItemPosition+prior pseudo-views"
    )
    p.add_argument(
        "--prior-strength-n",
        type=finite_float,
        help="ItemPosition+prior|N pseudo-views (default: chosen on validation rows)",
    )
    p.add_argument(
        "--prior-grid",
        type=finite_float,
        nargs="+",
        default=list(PRIOR_GRID),
        help="values of a tried for ItemPosition+prior|N (default %(default)s)",
    )
    p.add_argument(
        "--predictions", type=Path, help="write one row per test view to this Parquet file"
    )


def check_baseline_args(args: argparse.Namespace) -> None:
    """Refuse negative prior strengths before any data is read."""
    if args.prior_strength < 0:
        raise SegintError(f"--prior-strength must be >= 0, got {args.prior_strength}")
    if args.prior_strength_n is not None and args.prior_strength_n < 0:
        raise SegintError(f"--prior-strength-n must be >= 0, got {args.prior_strength_n}")
    if any(a < 0 for a in args.prior_grid):
        raise SegintError(f"--prior-grid values must be >= 0, got {args.prior_grid}")


def fit_baselines(
    args: argparse.Namespace,
    fit: pl.DataFrame,
    test: pl.DataFrame,
    valid: npt.NDArray[np.bool_],
    valid_rows: str,
    s_max: int,
    bernoulli: bool = False,
) -> tuple[MethodScores, dict[str, Any]]:
    """Every baseline's scores on ``test`` and the report's ``settings`` entry."""
    check_baseline_args(args)
    setting: dict[str, Any]
    if args.prior_strength_n is not None:
        a = float(args.prior_strength_n)
        setting = {"a": a, "chosen_on": "given (--prior-strength-n)"}
    else:
        if not valid.any() or valid.all():
            raise SegintError(
                f"choosing ItemPosition+prior|N's a needs training and validation rows, got "
                f"{int((~valid).sum())} and {int(valid.sum())}; or give --prior-strength-n"
            )
        mask = pl.Series(valid)
        a, grid = choose_prior_strength(
            fit.filter(~mask), fit.filter(mask), s_max, args.seed, tuple(args.prior_grid)
        )
        setting = {
            "a": a,
            "chosen_on": valid_rows,
            "criterion": "NDCG@5 (strict), profiles fitted on the training rows only",
            "grid_NDCG@5": grid,
        }
    methods = baseline_scores(
        fit,
        test,
        s_max=s_max,
        seed=args.seed,
        prior_strength=args.prior_strength,
        bernoulli=bernoulli,
        prior_strength_n=a,
    )
    settings = {
        "ItemPosition+prior": {"a": args.prior_strength, "chosen_on": "given (--prior-strength)"},
        "ItemPosition+prior|N": setting,
    }
    return methods, settings


def report_methods(
    args: argparse.Namespace,
    fit: pl.DataFrame,
    test: pl.DataFrame,
    methods: MethodScores,
    settings: dict[str, Any],
    paired_with: str | None = None,
) -> None:
    """Evaluate ``methods`` on the test rows; print the table and write ``--json`` (with the
    chosen ``settings``) and ``--predictions`` (one row per test view) when asked.

    ``paired_with``: add the report's ``paired`` entry, that method minus every other on the
    same rows with ``args.bootstrap`` replicates (none when it is 0).
    """
    from segint.predictions import predictions_frame, write_predictions
    from segint.report import paired_differences

    result = evaluate_methods(fit, test, methods, seed=args.seed)
    result["settings"] = settings
    prov = getattr(args, "provenance", None)
    if prov is not None:  # set by the loaders: input files, filters, split, overlap dropped
        result["rows"]["test_overlap_dropped"] = prov["rows"].get("test_overlap_dropped", 0)
        result["provenance"] = prov
    frame = None
    if args.predictions is not None or paired_with is not None:
        frame = predictions_frame(fit, test, methods, args.seed)
    if paired_with is not None and frame is not None and args.bootstrap > 0:
        logging.getLogger(__name__).info(
            "paired differences %s - every other method, %d bootstrap replicates",
            paired_with, args.bootstrap,
        )  # fmt: skip
        result["paired"] = paired_differences(frame, paired_with, args.bootstrap, args.seed)
    sys.stdout.write(format_table(result) + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        sys.stdout.write(f"wrote {args.json}\n")
    if args.predictions is not None and frame is not None:
        write_predictions(frame, args.predictions)
        sys.stdout.write(f"wrote {args.predictions}\n")


def learned_side_tables(
    args: argparse.Namespace,
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """(video, user) side tables for the learned baselines: none with ``--no-side-tables``;
    each table given (``--video-table``, ``--user-table``) whatever the log's format; else
    KuaiRand-Pure's bundled table, for a KuaiRand log only (`segint.data.log_format`): another
    log's ids are not KuaiRand's, so joining them to its tables would give wrong features."""
    from training.side import kuairand_user_table, kuairand_video_table

    if args.no_side_tables:
        return None, None
    bundled = log_format(args.format, args.data, args.train, args.test) == "kuairand"
    return (
        kuairand_video_table(args.video_table) if bundled or args.video_table else None,
        kuairand_user_table(args.user_table) if bundled or args.user_table else None,
    )


def add_learned_options(p: argparse.ArgumentParser, threads: bool = True) -> None:
    """--learned and the side tables the learned baselines read (and ``--threads``, unless
    the command has its own)."""
    p.add_argument(
        "--learned",
        help="comma-separated learned baselines to add (hazard-gbdt, din-slot, sasrec, tpm, d2q)",
    )
    p.add_argument(
        "--video-table",
        type=Path,
        help=f"video side table (default for a KuaiRand log: {VIDEO_TABLE})",
    )
    p.add_argument(
        "--user-table",
        type=Path,
        help=f"user side table (default for a KuaiRand log: {USER_TABLE})",
    )
    p.add_argument(
        "--no-side-tables", action="store_true", help="give the learned baselines no side tables"
    )
    if threads:
        p.add_argument(
            "--threads",
            type=int,
            default=1,
            help="CPU threads of the learned baselines (default 1)",
        )


def learned_names(args: argparse.Namespace) -> list[str]:
    """The names of ``--learned``, checked against the registry before any data is read."""
    if not args.learned:
        return []
    from learned import LEARNED

    names = [n.strip() for n in args.learned.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEARNED]
    if unknown or not names:
        raise SegintError(
            f"--learned: unknown baseline {unknown[0] if unknown else args.learned!r}; "
            f"choose from {', '.join(LEARNED)}"
        )
    if args.threads < 1:
        raise SegintError(f"--threads must be >= 1, got {args.threads}")
    import importlib.util

    for name in names:
        module = LEARNED[name].split(":")[0]
        if importlib.util.find_spec(module) is None:
            raise SegintError(f"--learned: {name} is not available (no module {module})")
    return list(dict.fromkeys(names))


def fit_learned(
    args: argparse.Namespace,
    names: list[str],
    fit: pl.DataFrame,
    test: pl.DataFrame,
    valid: npt.NDArray[np.bool_],
    valid_rows: str,
    s_max: int,
) -> tuple[MethodScores, dict[str, Any]]:
    """Fit and score each learned baseline; its settings record the validation rows and time."""
    import time

    from learned import LearnedInput, get_learner
    from learned.base import to_method

    if not valid.any() or valid.all():
        raise SegintError(
            f"learned baselines need training and validation rows, got "
            f"{int((~valid).sum())} and {int(valid.sum())}"
        )
    video_table, user_table = learned_side_tables(args)
    data = LearnedInput(
        fit=fit,
        valid=valid,
        test=test,
        s_max=s_max,
        seed=args.seed,
        video_table=video_table,
        user_table=user_table,
        threads=args.threads,
    )
    methods: MethodScores = {}
    settings: dict[str, Any] = {}
    for name in names:
        logging.getLogger(__name__).info("fitting learned baseline %s", name)
        start = time.perf_counter()
        out = get_learner(name)(data)
        seconds = time.perf_counter() - start
        methods[name] = to_method(name, out, test, s_max)
        settings[name] = {
            **out.settings,
            "chosen_on": valid_rows,
            "fit_and_predict_seconds": round(seconds, 2),
            "side_tables": [
                k for k, t in (("video", video_table), ("user", user_table)) if t is not None
            ],
        }
    return methods, settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "baselines", help="evaluate Random/AllPosition/UserPosition/ItemPosition(+prior)"
    )
    add_source_options(p)
    add_baseline_options(p)
    p.add_argument("--bernoulli", action="store_true", help="Bernoulli-drawn scores (reference)")
    add_learned_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_baseline_args(args)
    names = learned_names(args)
    fit, test, valid, valid_rows = load_fit_test(args)
    methods, settings = fit_baselines(
        args, fit, test, valid, valid_rows, args.s_max, bernoulli=args.bernoulli
    )
    if names:
        more, more_settings = fit_learned(args, names, fit, test, valid, valid_rows, args.s_max)
        methods.update(more)
        settings.update(more_settings)
    report_methods(args, fit, test, methods, settings)
    return 0
