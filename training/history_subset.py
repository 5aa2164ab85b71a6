"""Keep the predictions rows of users with long histories, for `segint compare` on them.

    .venv/bin/python -m training.history_subset PRED.parquet OUT.parquet --data LOG \\
        --format kuairand --min-views 5

A row's history length is the number of the user's views strictly earlier in time in the
whole log (any split), as the model's history inputs count them: a cut on counts, never on
outcomes. Rows are matched to the log by (user, video, time).
"""

from __future__ import annotations

import argparse
import logging

import polars as pl

from segint.data import Filters, load_table
from segint.predictions import read_predictions
from segint.splits import history_index

log = logging.getLogger("segint.history_subset")


def earlier_views(table: pl.DataFrame, cap: int) -> pl.DataFrame:
    """(user_id, video_id, time_ms, views): strictly earlier views per row, capped at ``cap``."""
    hist = history_index(table, cap)
    return table.select("user_id", "video_id", "time_ms").with_columns(
        views=pl.Series((hist >= 0).sum(axis=1))
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("predictions")
    p.add_argument("out")
    p.add_argument("--data", required=True)
    p.add_argument("--format", default="kuairand")
    p.add_argument("--min-views", type=int, default=5)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    frame = read_predictions(args.predictions)
    views = earlier_views(load_table(args.data, args.format, Filters()), args.min_views)
    keys = ["user_id", "video_id", "time_ms"]
    views = views.unique(subset=keys, keep="first")
    joined = frame.join(views, on=keys, how="left", maintain_order="left")
    if joined["views"].null_count():
        raise SystemExit(f"{args.predictions}: rows not in {args.data}")
    out = joined.filter(pl.col("views") >= args.min_views).drop("views")
    out.write_parquet(args.out)
    log.info("kept %d of %d rows (>= %d earlier views)", out.height, frame.height, args.min_views)


if __name__ == "__main__":
    main()
