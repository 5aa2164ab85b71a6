"""`segint compare --min-history K --history-data LOG`: only rows of users with at least K
strictly earlier views in the log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.cli import main
from segint.data import load_table
from segint.predictions import predictions_frame, write_predictions

S = 40


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A canonical log (user 1: 8 views, user 2: 3 views, user 3: 1 view) and a predictions
    file of every row with two random methods."""
    rows = [(1, 100 + i, 1000 * (i + 1)) for i in range(8)]
    rows += [(2, 200 + i, 1500 * (i + 1)) for i in range(3)] + [(3, 300, 5000)]
    log = pl.DataFrame(rows, schema=["user_id", "video_id", "time_ms"], orient="row")
    log = log.with_columns(duration_ms=pl.lit(20_000), play_time_ms=pl.lit(7_000))
    log_path, rows_path = tmp_path / "log.csv", tmp_path / "rows.parquet"
    log.write_csv(log_path)
    table = load_table(log_path, "canonical")
    rng = np.random.default_rng(0)

    def method() -> tuple[np.ndarray, np.ndarray]:
        dist = rng.random((table.height, S))
        return 1.0 - dist, dist / dist.sum(axis=1, keepdims=True)

    frame = predictions_frame(table.head(0), table, {"A": method(), "B": method()}, seed=0)
    write_predictions(frame, rows_path)
    return log_path, rows_path


def _rows(argv: list[str], out: Path) -> int:
    assert main([*argv, "--bootstrap", "20", "--no-progress", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    return int(report["rows"])


def test_min_history_keeps_users_with_enough_earlier_views(files, tmp_path: Path) -> None:
    """User 1's views 6-8 have >= 5 earlier views; views 2.. of users 1 and 2 have >= 1."""
    log, rows = files
    base = ["compare", str(rows), "A", "B", "--history-data", str(log), "--format", "canonical"]
    out = tmp_path / "c.json"
    assert _rows([*base, "--min-history", "5"], out) == 3
    assert json.loads(out.read_text())["min_history"] == 5
    assert _rows([*base, "--min-history", "1"], out) == 7 + 2
    assert _rows(["compare", str(rows), "A", "B"], out) == 12


def test_files_without_such_rows_are_skipped(files, tmp_path: Path, capsys) -> None:
    """Pooling: a file with no rows in the subset is skipped and named, the others count."""
    log, rows = files
    head = tmp_path / "head.parquet"
    pl.read_parquet(rows).head(3).write_parquet(head)  # user 1's first 3 views: < 5 earlier
    out = tmp_path / "c.json"
    argv = ["compare", str(rows), str(head), "A", "B", "--history-data", str(log)]
    assert _rows([*argv, "--format", "canonical", "--min-history", "5"], out) == 3
    assert f"skipped {head}" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["files"] == [str(rows)] and report["skipped"] == [str(head)]


def test_min_history_errors_are_one_line(files, tmp_path: Path, capsys) -> None:
    log, rows = files
    other = tmp_path / "other.csv"
    pl.read_csv(log).head(5).write_csv(other)
    fmt = ["--format", "canonical"]
    for argv, message in (
        (["--min-history", "5"], "--history-data"),
        (["--min-history", "0", "--history-data", str(log), *fmt], "--min-history"),
        (["--history-data", str(log), *fmt], "--min-history"),
        (["--min-history", "9", "--history-data", str(log), *fmt], "no rows of users"),
        (
            ["--cold", "--min-history", "9", "--history-data", str(log), *fmt],
            "no cold rows of users with >= 9 earlier views in any of the 1 file(s)",
        ),
        (["--min-history", "1", "--history-data", str(other), *fmt], "not in --history-data"),
    ):
        assert main(["compare", str(rows), "A", "B", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
