"""Log readers and the streaming preparation step (`segint data prepare`).

Three input formats are read into one canonical table
``user_id, video_id, time_ms, duration_ms, play_time_ms``:

* ``kuairand``: KuaiRand standard logs (the 19 official columns, ``.csv`` or ``.csv.gz``);
* ``segmm``: the SegMM interaction CSV (``playing_time``; its ``label_1D`` is recomputed);
* ``canonical``: CSV or Parquet with the canonical columns.

Everything is a polars lazy query run on the streaming engine, so memory stays bounded by the
duplicate-detection hash table, not by the file size. A malformed file raises `DataError`
naming the file, the row and the column.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from segint.errors import DataError
from segint.segments import DEFAULT_S_MAX, SEGMENT_MS

FORMATS = ("kuairand", "segmm", "canonical")
CANONICAL = ["user_id", "video_id", "time_ms", "duration_ms", "play_time_ms"]
KUAIRAND_COLUMNS = [
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
]  # fmt: skip
# Columns each format must have; all are read as integers.
REQUIRED = {
    "kuairand": KUAIRAND_COLUMNS,
    "segmm": ["user_id", "video_id", "time_ms", "duration_ms", "playing_time"],
    "canonical": CANONICAL,
}
PREPARED_FILE = "interactions.parquet"
# Rows de-duplicated at once by `segint data prepare` (~350 bytes of memory each).
PARTITION_ROWS = 5_000_000


@dataclass(frozen=True)
class Filters:
    """Row filters of spec section 1 (defaults = the reference's)."""

    s_max: int = DEFAULT_S_MAX  # slots; keeps 0 < duration_ms < s_max * 5000
    min_play_ms: int = 1  # keeps play_time_ms >= this (reference: play > 0)
    min_duration_ms: int = 1  # keeps duration_ms >= this (reference: duration > 0)
    require_click: bool = True  # KuaiRand only: keeps is_click > 0
    drop_duplicates: bool = True  # drops exact duplicate log rows

    def __post_init__(self) -> None:
        if not 1 <= self.s_max <= 400:
            raise ValueError(f"s_max must be in [1, 400], got {self.s_max}")
        if self.min_play_ms < 1 or self.min_duration_ms < 1:
            raise ValueError("min_play_ms and min_duration_ms must be >= 1")


def _header(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return list(pl.read_parquet_schema(path))
    try:
        head = pl.read_csv(path, n_rows=0, infer_schema_length=0)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: empty file (no header row)") from None
    except (pl.exceptions.ComputeError, OSError) as e:
        raise DataError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None
    return head.columns


def _scan(path: Path, columns: Sequence[str], as_text: bool = False) -> pl.LazyFrame:
    dtype = pl.String if as_text else pl.Int64
    if path.suffix == ".parquet":
        lf = pl.scan_parquet(path).select(columns)
        return lf.with_columns(pl.col(c).cast(dtype) for c in columns)
    return pl.scan_csv(path, schema_overrides=dict.fromkeys(columns, dtype)).select(columns)


def _locate_bad_value(path: Path, columns: Sequence[str]) -> DataError:
    """Second, slow pass after a failed typed read: find the first bad cell."""
    text = _scan(path, columns, as_text=True).with_row_index("_row").collect()
    for col in columns:
        s = text[col]
        parsed = s.str.strip_chars().cast(pl.Int64, strict=False)
        if parsed.dtype != pl.Int64:  # pragma: no cover - cast always yields Int64
            continue
        # Floats such as "12.0" are accepted by the typed read only when integral; treat as bad.
        bad = parsed.is_null()
        if bad.any():
            i = int(bad.arg_max() or 0)
            value = s[i]
            what = (
                "missing value" if value is None or value == "" else f"non-integer value {value!r}"
            )
            return DataError(f"{path}: row {i + 1} (line {i + 2}), column {col!r}: {what}")
    return DataError(f"{path}: could not be parsed as integers")


def scan_log(path: str | Path, fmt: str) -> pl.LazyFrame:
    """Lazy canonical view of one log file (plus ``is_click`` for KuaiRand)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    header = _header(path)
    missing = [c for c in REQUIRED[fmt] if c not in header]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} for format {fmt!r}")
    lf = _scan(path, REQUIRED[fmt])
    if fmt == "segmm":
        lf = lf.rename({"playing_time": "play_time_ms"})
    return lf


def _with_labels(lf: pl.LazyFrame) -> pl.LazyFrame:
    n = (pl.col("duration_ms") + SEGMENT_MS - 1) // SEGMENT_MS
    skipped = (pl.col("play_time_ms") + SEGMENT_MS - 1) // SEGMENT_MS - 1
    lf = lf.with_columns(n_segments=n).with_columns(
        exit_slot=pl.when(pl.col("play_time_ms") >= pl.col("duration_ms"))
        .then(pl.col("n_segments"))
        .otherwise(skipped)
    )
    # label_j = sign(exit - j), j = 0..N-1: 1 watched, 0 exit segment, -1 never reached.
    labels = pl.int_ranges(pl.col("exit_slot"), pl.col("exit_slot") - pl.col("n_segments"), -1)
    return lf.with_columns(label_1d=labels.list.eval(pl.element().sign()).cast(pl.List(pl.Int8)))


def _filter_flags(fmt: str, f: Filters) -> dict[str, pl.Expr]:
    flags = {
        "play_time": pl.col("play_time_ms") >= f.min_play_ms,
        "duration": (pl.col("duration_ms") >= f.min_duration_ms)
        & (pl.col("duration_ms") < f.s_max * SEGMENT_MS),
    }
    if fmt == "kuairand" and f.require_click:
        flags["click"] = pl.col("is_click") > 0
    return flags


def _concat(paths: Sequence[str | Path], fmt: str) -> pl.LazyFrame:
    if not paths:
        raise DataError("no input file given")
    return pl.concat([scan_log(p, fmt) for p in paths], how="vertical")


def _collect(lf: pl.LazyFrame, paths: Sequence[str | Path], fmt: str) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
        for p in paths:  # find the file and cell the typed read choked on
            err = _locate_bad_value(Path(p), REQUIRED[fmt])
            if "row" in str(err):
                raise err from None
        raise


def prepare_parts(
    paths: Sequence[str | Path],
    fmt: str,
    filters: Filters = Filters(),
    partition_rows: int = PARTITION_ROWS,
) -> tuple[list[pl.LazyFrame], dict[str, object]]:
    """Filter, de-duplicate and label the logs; returns lazy parts of the result and a summary.

    The summary (rows read, rows dropped by each filter in order) comes from one streaming
    aggregation pass. De-duplication needs a hash table of the rows it has seen, so a log with
    more than ``partition_rows`` surviving rows is cut into parts by a hash of ``user_id``
    (exact duplicates share it); each part is de-duplicated on its own, which bounds memory by
    the part size at the cost of one more read of the input per part.
    """
    raw = _concat(paths, fmt)
    flags = _filter_flags(fmt, filters)
    # Each filter's drop count is counted on rows that survived the filters before it.
    aggs = [pl.len().alias("rows_read")]
    aggs += [pl.col(c).null_count().alias(f"null_{c}") for c in raw.collect_schema().names()]
    passed = pl.lit(True)
    for name, flag in flags.items():
        aggs.append((passed & ~flag.fill_null(False)).sum().alias(f"dropped_{name}"))
        passed = passed & flag.fill_null(False)
    counts = _collect(raw.select(aggs), paths, fmt).row(0, named=True)
    for key, value in counts.items():
        if key.startswith("null_") and value:
            for p in paths:
                err = _locate_bad_value(Path(p), REQUIRED[fmt])
                if "row" in str(err):
                    raise err
    dropped = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
    kept = raw.filter(passed)
    n_kept = counts["rows_read"] - sum(dropped.values())
    n_parts = max(1, math.ceil(n_kept / partition_rows)) if filters.drop_duplicates else 1
    parts = []
    for i in range(n_parts):
        part = kept if n_parts == 1 else kept.filter(pl.col("user_id").hash(seed=7) % n_parts == i)
        if filters.drop_duplicates:
            part = part.unique(maintain_order=False)  # over every column of the log
        parts.append(_with_labels(part.select(CANONICAL)))
    summary: dict[str, object] = {
        "inputs": [str(p) for p in paths],
        "format": fmt,
        "filters": asdict(filters),
        "rows_read": counts["rows_read"],
        "dropped": dropped,
        "parts": n_parts,
    }
    return parts, summary


def prepare_lazy(
    paths: Sequence[str | Path], fmt: str, filters: Filters = Filters()
) -> tuple[pl.LazyFrame, dict[str, object]]:
    """`prepare_parts` as one lazy frame (for data that fits in memory)."""
    parts, summary = prepare_parts(paths, fmt, filters)
    return pl.concat(parts), summary


def write_prepared(
    paths: Sequence[str | Path],
    fmt: str,
    out_dir: str | Path,
    filters: Filters = Filters(),
    partition_rows: int = PARTITION_ROWS,
) -> dict[str, object]:
    """Run `prepare_parts`, write ``OUT/interactions.parquet`` part by part, add statistics."""
    parts, summary = prepare_parts(paths, fmt, filters, partition_rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / PREPARED_FILE
    tmp = target.with_suffix(".parquet.tmp")
    if len(parts) == 1:
        parts[0].sink_parquet(tmp, engine="streaming")
    else:
        writer: pq.ParquetWriter | None = None
        for part in tqdm(parts, desc="prepare", unit="part", file=sys.stderr):
            table = part.collect(engine="streaming").to_arrow()
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        assert writer is not None
        writer.close()
    tmp.replace(target)  # atomic: a crash never leaves a half-written table behind
    stats = (
        pl.scan_parquet(target)
        .select(
            rows_kept=pl.len(),
            users=pl.col("user_id").n_unique(),
            videos=pl.col("video_id").n_unique(),
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    hist = (
        pl.scan_parquet(target)
        .group_by("exit_slot")
        .len()
        .sort("exit_slot")
        .collect(engine="streaming")
    )
    dropped: dict[str, int] = summary["dropped"]  # type: ignore[assignment]
    rows_read: int = summary["rows_read"]  # type: ignore[assignment]
    dropped["duplicates"] = rows_read - sum(dropped.values()) - stats["rows_kept"]
    summary.update(stats)
    summary["exit_slot_histogram"] = dict(
        zip(hist["exit_slot"].to_list(), hist["len"].to_list(), strict=True)
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def prepared_format(path: str | Path) -> str | None:
    """The raw format prepared data was read from (``summary.json`` beside it, from
    `write_prepared`); None when ``path`` is not prepared data or records none."""
    p = Path(path)
    if not p.is_dir() and p.suffix != ".parquet":
        return None  # a raw log (`load_table` reads nothing else as prepared data)
    summary = (p if p.is_dir() else p.parent) / "summary.json"
    try:
        fmt = json.loads(summary.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return fmt if fmt in FORMATS else None


def log_format(fmt: str | None, *paths: str | Path | None) -> str | None:
    """The format of the logs a command reads: ``fmt`` (its ``--format``) when given, else the
    one their prepared data records (`prepared_format`; the same for every path given, else
    None). Commands that use KuaiRand's bundled side tables ask this, so that a prepared
    KuaiRand log gets them and another log, raw or prepared, does not."""
    if fmt is not None:
        return fmt
    found = {prepared_format(p) for p in paths if p}
    return found.pop() if len(found) == 1 else None


def load_table(
    path: str | Path, fmt: str | None = None, filters: Filters = Filters()
) -> pl.DataFrame:
    """Load prepared data (a directory or ``.parquet`` from `write_prepared`) or a raw log.

    With ``fmt`` given the file is read as a raw log of that format and prepared in memory.
    Rows come back sorted by ``(user_id, time_ms, video_id)``.
    """
    p = Path(path)
    if fmt is None:
        if p.is_dir():
            p = p / PREPARED_FILE
        if p.suffix != ".parquet" or not p.exists():
            raise DataError(f"{path}: not prepared data (give --format to read a raw log)")
        df = pl.read_parquet(p)
    else:
        lf, _ = prepare_lazy([p], fmt, filters)
        df = lf.collect(engine="streaming")
    if df.height == 0:
        raise DataError(f"{path}: no rows left after filtering")
    return df.sort(["user_id", "time_ms", "video_id", "play_time_ms"])
