"""`segint compare FILE.parquet [FILE2 ...] A B`: paired differences ``A - B`` with bootstrap
standard errors and a win/tie/loss verdict at 2 SE (`segint.compare`).

    segint compare runs/eval_temporal.parquet runs/eval_random.parquet \\
        SegInterest "ItemPosition+prior|N" [--cold] [--bootstrap 1000] [--json out.json]

The files are predictions of `segint evaluate --predictions` or `segint baselines
--predictions`; several files (splits, seeds) are pooled with a bootstrap stratified by file.
``--cold`` keeps only cold rows (video unseen in the fitting rows); their tie-breaking
permutation is then drawn over the cold rows, as the report's ``*_cold`` sections draw it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from segint.errors import SegintError


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="paired differences of two methods, bootstrap SE")
    p.add_argument(
        "items",
        nargs="+",
        metavar="FILE.parquet [FILE2 ...] A B",
        help="predictions file(s), then the two method names",
    )
    p.add_argument("--cold", action="store_true", help="only cold rows (unseen videos)")
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
    if args.bootstrap < 2:
        raise SegintError(f"--bootstrap must be >= 2, got {args.bootstrap}")
    *paths, a, b = args.items
    if a == b:
        raise SegintError(f"methods A and B are both {a!r}")
    frames = []
    for path in paths:
        frame = read_predictions(path)
        if args.cold:
            frame = frame.filter(pl.col("cold"))
            if frame.height == 0:
                raise SegintError(f"{path}: no cold rows")
        frames.append((path, frame))
    rows = compare(
        frames, a, b, n_boot=args.bootstrap, seed=args.seed, progress=not args.no_progress
    )
    n_rows = sum(f.height for _, f in frames)
    sys.stdout.write(format_rows(rows, a, b, n_rows, len(frames), args.bootstrap) + "\n")
    if args.json is not None:
        out = {
            "A": a,
            "B": b,
            "files": [str(p) for p in paths],
            "rows": n_rows,
            "cold_only": args.cold,
            "bootstrap": args.bootstrap,
            "comparisons": [asdict(r) | {"verdict": r.verdict} for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        sys.stdout.write(f"wrote {args.json}\n")
    return 0
