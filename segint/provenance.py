"""Where a run's rows came from, and the checks that keep test rows out of training.

A provenance record (``RUN/provenance.json`` of `segint train`, ``source.provenance`` of a
SegRec run, ``provenance`` of a baselines/evaluate JSON report and of an artifact manifest)::

    {"files": [{"role": "data" | "train" | "test", "path": ABS, "sha256": HEX, "rows": N}],
     "format": "kuairand" | ... | null, "filters": {...`segint.data.Filters`...},
     "split": {"method": "random_per_user", "seed": 0, "min_interactions": 1,
               "valid_frac": 0.09, "test_frac": 0.10, "assignment": "row-hash-v1"}
              | {"method": "temporal", ...} | {"method": "train_file", "valid": "last 10% by time"},
     "rows": {"train": N, "valid": N, "test": N, ...}}

``rows`` of a file counts its rows after the filters. `check_same_source` compares the parts
that decide which rows a split holds (file contents, format, filters, split definition) and
raises one-line `SegintError`s, which the CLI turns into exit code 2.

Row identity: ``(user_id, video_id, time_ms)`` (`segint.splits.ROW_IDENTITY`). With
``--train A --test B`` the rows of B that also occur in A are dropped (`drop_overlap`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from segint.data import PREPARED_FILE, Filters
from segint.errors import SegintError
from segint.splits import ROW_IDENTITY, SPLIT_METHODS

log = logging.getLogger(__name__)
PROVENANCE_FILE = "provenance.json"
TRAIN_FILE = "train_file"  # split method of a run trained on a whole file (--train)
# Version of the random_per_user assignment (segint.splits.row_uniform); bump if it changes.
ASSIGNMENT = "row-hash-v1"


def data_file(path: str | Path, fmt: str | None) -> Path:
    """The file actually read for ``path`` (a prepared directory means its Parquet table)."""
    p = Path(path)
    if fmt is None and p.is_dir():
        p = p / PREPARED_FILE
    return p.resolve()


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(role: str, path: str | Path, fmt: str | None, rows: int) -> dict[str, Any]:
    """One input file: its role, absolute path, sha256 of its bytes and rows after filters."""
    p = data_file(path, fmt)
    st = p.stat()
    return {"role": role, "path": str(p), "sha256": _sha256(str(p), st.st_size, st.st_mtime_ns),
            "rows": rows}  # fmt: skip


def split_record(method: str, seed: int | None = None, min_interactions: int = 1) -> dict[str, Any]:
    """The split definition: what, with the seed and fractions that decide each row's split."""
    if method == TRAIN_FILE:
        return {"method": TRAIN_FILE, "valid": "last 10% by time of the training file"}
    if method not in SPLIT_METHODS:
        raise SegintError(f"unknown split {method!r}")
    out: dict[str, Any] = {"method": method, "valid_frac": 0.09, "test_frac": 0.10}
    if method == "random_per_user":
        out.update(seed=seed, min_interactions=min_interactions, assignment=ASSIGNMENT)
    return out


def record(
    files: list[dict[str, Any]],
    fmt: str | None,
    filters: Filters,
    split: dict[str, Any],
    rows: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A provenance record (see the module doc)."""
    return {"files": files, "format": fmt, "filters": asdict(filters), "split": split,
            "rows": rows or {}}  # fmt: skip


def write(run_dir: str | Path, prov: dict[str, Any]) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / PROVENANCE_FILE).write_text(json.dumps(prov, indent=2))


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's provenance, or None for a run made before provenance was recorded."""
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        prov = json.loads(path.read_text())
        assert isinstance(prov, dict) and isinstance(prov["files"], list)
    except (ValueError, KeyError, AssertionError):
        raise SegintError(f"{path}: not a provenance record") from None
    return prov


def training_file(prov: dict[str, Any]) -> dict[str, Any]:
    """The file a run trained on (role ``data`` for a split, ``train`` for a file pair)."""
    for f in prov["files"]:
        if f["role"] in ("data", "train"):
            return dict(f)
    raise SegintError("provenance record without a training file")


def _short(f: dict[str, Any]) -> str:
    return f"{Path(f['path']).name} (sha256 {f['sha256'][:12]})"


def check_same_source(
    trained: dict[str, Any], asked: dict[str, Any], what: str, compare_split: bool = True
) -> None:
    """Refuse, in one line, ``asked`` (a source about to be used) whose training file, format,
    filters or split definition differ from ``trained`` (the run's): the rows it would call
    test need not be the run's test rows. ``what`` names the run in the message."""
    a, b = training_file(trained), training_file(asked)
    if a["sha256"] != b["sha256"]:
        raise SegintError(
            f"{what} was trained on {_short(a)}, not {_short(b)}: a different file, whose "
            "test rows may be its training rows"
        )
    if trained.get("format") != asked.get("format"):
        raise SegintError(
            f"{what} read its data with --format {trained.get('format')}, not {asked.get('format')}"
        )
    if trained["filters"] != asked["filters"]:
        diff = {
            k: (v, asked["filters"].get(k))
            for k, v in trained["filters"].items()
            if asked["filters"].get(k) != v
        }
        changes = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in diff.items())
        raise SegintError(f"{what} was trained with other filters ({changes})")
    if compare_split and trained["split"] != asked["split"]:
        t, q = trained["split"], asked["split"]
        raise SegintError(
            f"{what} was trained on split {_split_words(t)}, not {_split_words(q)}: "
            "its test rows would overlap its training rows"
        )


def check_run(
    trained: dict[str, Any] | None, asked: dict[str, Any], what: str, compare_split: bool = True
) -> None:
    """`check_same_source` for a run that may predate provenance (``trained`` None): such a
    run on a random_per_user split is refused, because its rows were assigned by the earlier
    rank-and-offset rule and most of this split's test rows trained it; otherwise a warning
    says that its file and filters cannot be checked."""
    if trained is not None:
        check_same_source(trained, asked, what, compare_split)
        return
    if compare_split and asked["split"]["method"] == "random_per_user":
        raise SegintError(
            f"{what} records no {PROVENANCE_FILE}: it predates the {ASSIGNMENT} random_per_user "
            "assignment, so this split's test rows are mostly its training rows; retrain it"
        )
    log.warning("%s records no provenance: its data file and filters cannot be checked", what)


def _split_words(s: dict[str, Any]) -> str:
    if s["method"] == "random_per_user":
        return (
            f"random_per_user seed {s.get('seed')} (min interactions "
            f"{s.get('min_interactions')}, {s.get('assignment', 'rank-offset (before row-hash-v1)')})"
        )
    return str(s["method"])


def drop_overlap(train: pl.DataFrame, test: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """``test`` without its rows whose identity ``(user_id, video_id, time_ms)`` occurs in
    ``train`` (order kept), and how many were dropped."""
    key = list(ROW_IDENTITY)
    kept = (
        test.with_row_index("_row")
        .join(train.select(key).unique(), on=key, how="anti")
        .sort("_row")
        .drop("_row")
    )
    return kept, test.height - kept.height
