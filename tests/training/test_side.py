"""Side tables as categorical codes of vocabulary rows (training/side.py), by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segint.errors import DataError
from segint.vocab import Vocab
from training import side
from training.side import read_side_table, side_codes


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_codes_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frequent values (>= MIN_COUNT vocabulary rows) get codes 2.. in sorted order, rare ones
    code 1, empty values and ids outside the table 0; the first tag of a list counts; rows of
    ids outside the vocabulary count for nothing."""
    monkeypatch.setattr(side, "MIN_COUNT", 2)
    csv = write(
        tmp_path / "videos.csv",
        "video_id,video_type,tag\n"
        '10,NORMAL,"3,9"\n'
        "11,NORMAL,3\n"
        "12,AD,7\n"
        "13,,9\n"
        "99,AD,7\n",  # not in the vocabulary: its AD and tag 7 do not make them frequent
    )
    table = read_side_table(csv, "video_id", ("video_type", "tag"))
    vocab = Vocab([10, 11, 12, 13, 14])  # 14 has no side row
    codes, sizes = side_codes(table, "video_id", vocab)
    assert sizes == (3, 3)  # video_type: {NORMAL}; tag: {3}  (+ unknown, rare)
    want = np.array(
        [
            [0, 0],  # row 0: the unknown video
            [2, 2],  # 10: NORMAL, first tag 3
            [2, 2],  # 11
            [1, 1],  # 12: AD and 7 are rare among vocabulary rows
            [0, 1],  # 13: empty type, tag 9 (rare: 10's 9 is not its first tag)
            [0, 0],  # 14: not in the table
        ]
    )
    np.testing.assert_array_equal(codes, want)


def test_bad_tables_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such side table"):
        read_side_table(tmp_path / "none.csv", "video_id", ("tag",))
    bad = write(tmp_path / "a.csv", "video_id,video_type\n1,NORMAL\n")
    with pytest.raises(DataError, match="no column 'tag'"):
        read_side_table(bad, "video_id", ("tag",))
    bad = write(tmp_path / "b.csv", "video_id,tag\nx,1\n")
    with pytest.raises(DataError, match="row 2, column 'video_id'"):
        read_side_table(bad, "video_id", ("tag",))


def test_bundled_tables_have_the_columns() -> None:
    """The bundled KuaiRand side tables read with the documented columns."""
    root = Path(__file__).resolve().parents[2] / "data" / "kuairand_pure"
    videos = read_side_table(
        root / "video_features_basic_pure.csv.gz", "video_id", side.VIDEO_COLUMNS
    )
    users = read_side_table(root / "user_features_pure.csv.gz", "user_id", side.USER_COLUMNS)
    assert videos.height == 7583 and users.height == 27285
    assert list(users.columns) == ["user_id", *side.USER_COLUMNS]
