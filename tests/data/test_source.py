"""`segint.source.DataSource`: the one loader of baselines, evaluate, train and segrec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.data import Filters
from segint.errors import SegintError
from segint.source import DataSource
from segint.splits import DROPPED, TEST, TRAIN, VALID, random_per_user


def _log(path: Path, users: list[int], times: list[int], play: int = 3000) -> Path:
    n = len(users)
    pl.DataFrame(
        {"user_id": users, "video_id": [7] * n, "time_ms": times, "duration_ms": [20_000] * n,
         "play_time_ms": [play] * n}
    ).write_csv(path)  # fmt: skip
    return path


def test_split_of_one_file_matches_the_split_function(tmp_path: Path) -> None:
    """The codes are random_per_user's on the loaded table; provenance counts them."""
    path = _log(tmp_path / "a.csv", [1] * 30 + [2] * 3, list(range(33)))
    loaded = DataSource(data=str(path), format="canonical", min_interactions=5, seed=3).load()
    expected = random_per_user(loaded.table, seed=3, min_interactions=5)
    assert np.array_equal(loaded.split, expected) and (loaded.split == DROPPED).sum() == 3
    rows = loaded.provenance["rows"]
    assert [rows[k] for k in ("train", "valid", "test", "dropped")] == [
        int((expected == c).sum()) for c in (TRAIN, VALID, TEST, DROPPED)
    ]
    assert loaded.valid_where == "validation rows of the random_per_user split, seed 3"


def test_file_pair_validates_the_tail_tests_the_second_file_and_drops_shared_rows(
    tmp_path: Path,
) -> None:
    """Training file: last 10% by time validate; test file: TEST, minus the rows (same user,
    video, time) that the training file has."""
    a = _log(tmp_path / "a.csv", [1] * 20, list(range(0, 200, 10)))
    b = _log(tmp_path / "b.csv", [1] * 5, [190, 500, 510, 520, 530], play=9000)
    loaded = DataSource(train=str(a), test=str(b), format="canonical").load()
    t, s = loaded.table["time_ms"].to_numpy(), loaded.split
    assert sorted(t[s == TEST]) == [500, 510, 520, 530]
    # the cut is the lower 90% quantile of the times (170 of 0..190): rows from it on validate
    assert sorted(t[s == VALID]) == [170, 180, 190] and (s == TRAIN).sum() == 17
    assert loaded.provenance["rows"]["test_overlap_dropped"] == 1
    assert list(loaded.table["time_ms"]) == sorted(t)  # one table in load_table's order


def test_round_trip_and_bad_combinations(tmp_path: Path) -> None:
    src = DataSource(data="x.csv", split="temporal", seed=2, filters=Filters(s_max=20))
    assert DataSource.from_dict(src.to_dict()) == src and src.kind == "split"
    pair = DataSource(train="a", test="b", format="kuairand")
    assert DataSource.from_dict(pair.to_dict()) == pair and pair.kind == "train_file"
    for bad in ({"data": "x", "train": "y"}, {}, {"test": "b"}):
        with pytest.raises(SegintError):
            DataSource(**bad)  # type: ignore[arg-type]
