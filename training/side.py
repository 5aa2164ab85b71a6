"""KuaiRand side tables as categorical feature ids of the model's vocabulary rows.

The model takes no new inputs for side features: each user / video vocabulary row gets a
fixed row of categorical codes, baked into the model as an id-indexed buffer (like the
exit counts), so the exported graphs and the service look them up from the ids they already
have. Code 0 of every feature is the reserved "unknown" row: the unknown id (row 0), an id
missing from the side table, or an empty value. Code 1 collects the rare values (seen on
fewer than ``MIN_COUNT`` vocabulary rows), so author and tag tables do not become one more
sparse id table; codes 2.. are the frequent values in sorted order.

Video table (``video_features_basic_pure.csv``): video_type, upload_type, music_type, the
first tag, author_id. User table (``user_features_pure.csv``): user_active_degree,
is_lowactive_period, is_live_streamer, is_video_author, the bucketed follow / fans / friend
counts and register days (the official ``*_range`` columns), onehot_feat0..17.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from segint.errors import DataError
from segint.vocab import Vocab

MIN_COUNT = 5  # vocabulary rows a value needs for its own embedding row
# The bundled KuaiRand-Pure side tables: `segint baselines`' defaults and the teacher's.
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "kuairand_pure"
VIDEO_TABLE = DATA_DIR / "video_features_basic_pure.csv.gz"
USER_TABLE = DATA_DIR / "user_features_pure.csv.gz"
VIDEO_COLUMNS = ("video_type", "upload_type", "music_type", "tag", "author_id")
USER_COLUMNS = (
    "user_active_degree",
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)
IntArray = npt.NDArray[np.int64]


def kuairand_side_tables(
    video: Path | None = None, user: Path | None = None
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """(video table, user table) with `read_side_table`'s columns: each from the path given
    (read, so a missing file is an error), else from the bundled KuaiRand-Pure file when it
    exists, else None."""
    return kuairand_video_table(video), kuairand_user_table(user)


def kuairand_video_table(video: Path | None = None) -> pl.DataFrame | None:
    """`kuairand_side_tables`' video table alone (the per-video exit table reads no user
    table)."""
    return _given_or_bundled(video, VIDEO_TABLE, "video_id", VIDEO_COLUMNS)


def kuairand_user_table(user: Path | None = None) -> pl.DataFrame | None:
    """`kuairand_side_tables`' user table alone."""
    return _given_or_bundled(user, USER_TABLE, "user_id", USER_COLUMNS)


def _given_or_bundled(
    path: Path | None, bundled: Path, key: str, columns: tuple[str, ...]
) -> pl.DataFrame | None:
    if path is None and not bundled.is_file():
        return None
    return read_side_table(path or bundled, key, columns)


def read_side_table(path: str | Path, key: str, columns: tuple[str, ...]) -> pl.DataFrame:
    """``key`` plus ``columns`` as strings ("" = missing); the first tag of a tag list.

    Raises:
        DataError: a missing file or column, or a non-integer key.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such side table")
    try:
        df = pl.read_csv(p, infer_schema=False)  # every column as text
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"{p}: unreadable side table ({str(e).splitlines()[0]})") from None
    missing = [c for c in (key, *columns) if c not in df.columns]
    if missing:
        raise DataError(f"{p}: side table has no column {missing[0]!r}")
    keys = df[key].cast(pl.Int64, strict=False)
    if keys.null_count():
        row = int(keys.is_null().arg_max() or 0)
        raise DataError(f"{p}: row {row + 2}, column {key!r}: not an integer id")
    out = df.select(
        keys.alias(key),
        *(pl.col(c).fill_null("").str.strip_chars() for c in columns),
    )
    if "tag" in columns:
        out = out.with_columns(pl.col("tag").str.split(",").list.first().fill_null(""))
    return out.unique(subset=key, keep="first")


def side_codes(table: pl.DataFrame, key: str, vocab: Vocab) -> tuple[IntArray, tuple[int, ...]]:
    """(len(vocab), K) codes of every vocabulary row and the K table sizes (codes 0..size-1).

    ``table``: `read_side_table`'s output. Row 0 (the unknown id) is all zeros.
    """
    columns = [c for c in table.columns if c != key]
    idx = vocab.lookup(table[key].to_numpy())
    known = idx > 0
    codes = np.zeros((len(vocab), len(columns)), dtype=np.int64)
    sizes = []
    for k, col in enumerate(columns):
        values = table[col].to_numpy()[known]
        present = values != ""
        uniq, counts = np.unique(values[present], return_counts=True)
        frequent = uniq[counts >= MIN_COUNT]  # sorted
        pos = np.searchsorted(frequent, values)
        pos_c = np.minimum(pos, max(len(frequent) - 1, 0))
        is_frequent = (
            (pos < len(frequent)) & (frequent[pos_c] == values)
            if len(frequent)
            else np.zeros(len(values), bool)
        )
        col_codes = np.where(is_frequent, 2 + pos, 1)
        codes[idx[known], k] = np.where(present, col_codes, 0)
        sizes.append(2 + len(frequent))
    return codes, tuple(sizes)
