"""`segint baselines --train A --test B` drops B's rows that are also in A (same user, video
and time), prints how many and records the count in the JSON's ``rows``."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from segint.provenance import drop_overlap
from tests.cli import segint
from tests.paths import KUAIRAND_FIXTURE, KUAIRAND_LOG


def test_real_later_log_shares_134_rows_with_the_training_log(tmp_path: Path) -> None:
    """The 2,000-row fixture holds 677 rows after the filters, 134 of them also in the
    KuaiRand-Pure training log: they are dropped, and the report says so."""
    out = tmp_path / "b.json"
    proc = segint(
        "baselines", "--train", str(KUAIRAND_LOG), "--test", str(KUAIRAND_FIXTURE),
        "--format", "kuairand", "--prior-strength-n", "1", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "dropped 134 of 677 test rows" in proc.stdout
    report = json.loads(out.read_text())
    assert report["rows"]["test"] == 677 - 134 and report["rows"]["test_overlap_dropped"] == 134
    files = {f["role"]: f for f in report["provenance"]["files"]}
    assert files["test"]["rows"] == 677 and files["train"]["rows"] == report["rows"]["train"]


def test_overlap_is_by_identity_not_by_whole_row() -> None:
    """A test row with a training row's user, video and time is dropped even when its play
    time differs; a row differing in time is kept; the test order is kept."""
    train = pl.DataFrame(
        {
            "user_id": [1, 1, 2],
            "video_id": [5, 6, 5],
            "time_ms": [10, 20, 10],
            "play_time_ms": [1, 2, 3],
        }
    )
    test = pl.DataFrame(
        {"user_id": [2, 1, 1, 3], "video_id": [5, 6, 6, 5], "time_ms": [10, 21, 20, 10],
         "play_time_ms": [99, 2, 77, 1]}
    )  # fmt: skip
    kept, dropped = drop_overlap(train, test)
    assert dropped == 2
    assert kept.rows() == [(1, 6, 21, 2), (3, 5, 10, 1)]
