"""Put one method of another predictions file next to a file's methods, to compare two models.

    .venv/bin/python -m training.merge_predictions BASE.parquet OTHER.parquet SegInterest \\
        SegInterest+tilt OUT.parquet

``OTHER``'s columns ``METHOD.*`` are added to ``BASE`` as ``NAME.*``; both files must hold the
same rows (user, video, time and tie-breaking seed, in order: the same split and seed), so
`segint compare OUT.parquet NAME METHOD` is a paired comparison of the two models.
"""

from __future__ import annotations

import argparse
import logging

import polars as pl

from segint.predictions import read_predictions

log = logging.getLogger("segint.merge_predictions")
KEYS = ("user_id", "video_id", "time_ms", "exit_slot", "tie_seed")


def merge(base: pl.DataFrame, other: pl.DataFrame, method: str, name: str) -> pl.DataFrame:
    """``base`` with ``other``'s ``method`` columns renamed to ``name``; rows must match."""
    keys = [k for k in KEYS if k in base.columns]
    if base.height != other.height or not base.select(keys).equals(other.select(keys)):
        raise ValueError("the two files do not hold the same rows in the same order")
    cols = [c for c in other.columns if c.startswith(method + ".")]
    if not cols:
        raise ValueError(f"no columns of method {method!r}")
    if any(name + c[len(method) :] in base.columns for c in cols):
        raise ValueError(f"method {name!r} is already in the base file")
    return base.with_columns(other[c].alias(name + c[len(method) :]) for c in cols)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("base")
    p.add_argument("other")
    p.add_argument("method")
    p.add_argument("name")
    p.add_argument("out")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = merge(read_predictions(args.base), read_predictions(args.other), args.method, args.name)
    out.write_parquet(args.out)
    log.info("wrote %s (%d rows, + %s)", args.out, out.height, args.name)


if __name__ == "__main__":
    main()
