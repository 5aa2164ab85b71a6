"""Where a command's rows come from: one `DataSource`, one `load`.

Two kinds, as on the command line:

* a split of one log (``--data FILE --split S --seed N --min-interactions K``);
* a training file, optionally with a later test file (``--train FILE [--test FILE]``): the
  training file's last 10% of rows by time validate (`carve_validation`); the test file's
  rows that also occur in the training file (same user, video, time) are dropped.

`DataSource.load` reads the file(s) with the source's `Filters` into one table in
`segint.data.load_table` order (so that histories see both files of a pair), assigns every
row a split code (`segint.splits`: TRAIN, VALID, TEST, DROPPED) and builds the provenance
record (`segint.provenance`). `baselines`, `evaluate`, `train` and `segrec` all load this way.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from segint import provenance
from segint.data import Filters, load_table
from segint.errors import SegintError
from segint.splits import SPLIT_NAMES, TEST, VALID, assign_split, temporal

TRAIN_FILE = provenance.TRAIN_FILE  # source kind (and data.split) of --train FILE
VALID_TAIL = 0.10  # a training file's share (by time) that validates
ORDER = ["user_id", "time_ms", "video_id", "play_time_ms"]  # load_table's row order


def carve_validation(table: pl.DataFrame, frac: float = VALID_TAIL) -> npt.NDArray[np.int8]:
    """Split of a training file: the last ``frac`` of rows by time validate, the rest train."""
    split = temporal(table, valid_frac=0.0, test_frac=frac)
    split[split == TEST] = VALID
    return split


@dataclass(frozen=True)
class Loaded:
    """A loaded source: every row, its split code, the validation rows in words, provenance."""

    table: pl.DataFrame  # sorted by (user_id, time_ms, video_id, play_time_ms)
    split: npt.NDArray[np.int8]  # (n,) TRAIN / VALID / TEST / DROPPED
    valid_where: str  # e.g. "validation rows of the random_per_user split, seed 0"
    provenance: dict[str, Any]  # `segint.provenance` record, rows per split included

    def print_overlap(self) -> None:
        """Say on stdout how many test-file rows were dropped for being in the training file."""
        n = self.provenance["rows"]["test_overlap_dropped"]
        if n:
            files = {f["role"]: f for f in self.provenance["files"]}
            sys.stdout.write(
                f"dropped {n:,} of {files['test']['rows']:,} test rows that are also in "
                f"{files['train']['path']} (same user, video, time)\n"
            )

    def rows(self, *codes: int) -> npt.NDArray[np.int64]:
        """Indices of the rows whose split is one of ``codes``."""
        return np.flatnonzero(np.isin(self.split, codes))


@dataclass(frozen=True)
class DataSource:
    """A split of ``data``, or the file pair ``train`` (+ ``test``); see the module doc."""

    data: str | None = None  # one log to split
    split: str = "random_per_user"  # with data: random_per_user | temporal
    seed: int = 0  # with data: the random_per_user seed
    min_interactions: int = 1  # with data: users with fewer rows are dropped
    train: str | None = None  # training file (its last 10% by time validates)
    test: str | None = None  # later test file (with train)
    format: str | None = None  # raw log format, None for prepared data
    filters: Filters = field(default_factory=Filters)

    def __post_init__(self) -> None:
        if self.data and (self.train or self.test):
            raise SegintError("give either --data (with --split) or --train and --test, not both")
        if not self.data and not self.train:
            raise SegintError("give --data FILE, or --train FILE (and --test FILE)")
        if self.test and not self.train:
            raise SegintError("--test needs --train FILE")

    @property
    def kind(self) -> str:
        """``split`` or ``train_file`` (the ``kind`` of a SegRec run's source)."""
        return "split" if self.data else TRAIN_FILE

    def load(self) -> Loaded:
        """Read, filter, split; drop test-file rows that are in the training file."""
        fmt, filters = self.format, self.filters
        overlap = 0
        if self.data:
            table = load_table(self.data, fmt, filters)
            split = assign_split(table, self.split, self.seed, self.min_interactions)
            files = [provenance.file_record("data", self.data, fmt, table.height)]
            split_def = provenance.split_record(self.split, self.seed, self.min_interactions)
            where = f"validation rows of the {self.split} split, seed {self.seed}"
        else:
            assert self.train is not None
            train = load_table(self.train, fmt, filters)
            parts = [train.with_columns(_split=pl.Series(carve_validation(train)))]
            files = [provenance.file_record("train", self.train, fmt, train.height)]
            if self.test:
                test_all = load_table(self.test, fmt, filters)
                test, overlap = provenance.drop_overlap(train, test_all)
                parts.append(test.with_columns(_split=pl.lit(TEST, pl.Int8)))
                files.append(provenance.file_record("test", self.test, fmt, test_all.height))
            # One table in load_table's order, so that histories see both files.
            both = pl.concat(parts).sort(ORDER)
            table, split = both.drop("_split"), both["_split"].to_numpy().astype(np.int8)
            split_def = provenance.split_record(TRAIN_FILE)
            where = f"last 10% by time of {Path(self.train).name}"
        rows = {name: int((split == code).sum()) for code, name in SPLIT_NAMES.items()}
        rows["dropped"] = int((split < 0).sum())
        rows["test_overlap_dropped"] = overlap
        prov = provenance.record(files, fmt, filters, split_def, rows)
        return Loaded(table, split, where, prov)

    def to_dict(self) -> dict[str, Any]:
        """The ``source`` entry of a SegRec run (``kind`` + the fields of its kind)."""
        if self.data:
            out: dict[str, Any] = {"kind": "split", "data": str(self.data), "format": self.format}
            out.update(split=self.split, seed=self.seed, min_interactions=self.min_interactions)
        else:
            out = {"kind": TRAIN_FILE, "train": str(self.train), "format": self.format}
            if self.test:
                out["test"] = str(self.test)
        out["filters"] = asdict(self.filters)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], filters: Filters | None = None) -> DataSource:
        """Inverse of `to_dict` (``filters`` overrides the recorded ones)."""
        f = filters if filters is not None else Filters(**d.get("filters", {}))
        if d["kind"] == TRAIN_FILE:
            return cls(train=d["train"], test=d.get("test"), format=d.get("format"), filters=f)
        return cls(
            data=d["data"],
            split=d["split"],
            seed=d["seed"],
            min_interactions=d["min_interactions"],
            format=d.get("format"),
            filters=f,
        )
