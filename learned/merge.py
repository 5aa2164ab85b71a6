"""Join two predictions files of the same test rows, so `segint compare` can pair methods
scored by different commands (e.g. `segint evaluate`'s ``SegInterest`` and `segint baselines
--learned`'s methods).

``python -m learned.merge OUT.parquet A.parquet B.parquet`` writes A's columns plus B's
methods that A lacks. It refuses (exit 2, one line) unless both files hold the same rows in
the same order with the same tie-breaking seed, and unless every method both files hold has
identical columns (the same split and fitting rows; e.g. ``ItemPosition+prior|N``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from segint.errors import SegintError
from segint.predictions import BASE_COLUMNS, method_names, read_predictions, write_predictions


def merge_predictions(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """``a`` plus the method columns of ``b`` it lacks; raises SegintError on any mismatch."""
    if a.height != b.height:
        raise SegintError(f"different row counts: {a.height} and {b.height}")
    for col in BASE_COLUMNS:
        if not a[col].equals(b[col]):
            raise SegintError(f"the files differ in column {col!r}: not the same test rows")
    shared = [m for m in method_names(b) if m in method_names(a)]
    for m in shared:
        for col in (c for c in b.columns if c.startswith(m + ".")):
            if col in a.columns and not a[col].equals(b[col]):
                raise SegintError(f"method {m!r} differs between the files ({col})")
    extra = [c for c in b.columns if c not in a.columns]
    return pl.concat([a, b.select(extra)], how="horizontal")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m learned.merge", description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args(argv)
    try:
        merged = merge_predictions(read_predictions(args.a), read_predictions(args.b))
    except SegintError as e:
        sys.stderr.write(f"learned.merge: {args.a} + {args.b}: {e}\n")
        return 2
    write_predictions(merged, args.out)
    sys.stdout.write(f"wrote {args.out} ({merged.height:,} rows, {method_names(merged)})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
