"""`segint compare` on hand-made predictions files with known differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.compare import Row, compare
from segint.predictions import metrics_from_frame, predictions_frame, write_predictions
from tests.cli import segint

S = 4


def _file(hits_a: list[bool], hits_b: list[bool]) -> pl.DataFrame:
    """Rows with N = 3 and exit slot 0; a method that "hits" ranks slot 0 first (and puts
    all its mass there), one that misses ranks it second (mass on slot 1)."""
    n = len(hits_a)
    test = pl.DataFrame(
        {
            "user_id": np.arange(n),
            "video_id": np.arange(n),
            "time_ms": np.zeros(n, np.int64),
            "duration_ms": np.full(n, 15000),
            "play_time_ms": np.full(n, 2000),
            "n_segments": np.full(n, 3),
            "exit_slot": np.zeros(n, np.int64),
        }
    )
    fit = test.head(0)

    def method(hits: list[bool]) -> tuple[np.ndarray, np.ndarray]:
        scores = np.tile([0.0, 1.0, 2.0, 3.0], (n, 1))
        scores[~np.array(hits), 0] = 1.5  # slot 1 now lowest
        dist = np.zeros((n, S))
        dist[np.arange(n), np.where(hits, 0, 1)] = 1.0
        return scores, dist

    return predictions_frame(fit, test, {"A": method(hits_a), "B": method(hits_b)}, seed=0)


def _by(rows: list[Row], metric: str, protocol: str = "strict") -> Row:
    return next(r for r in rows if r.metric == metric and r.protocol == protocol)


def test_known_difference_and_its_standard_error():
    """A hits every row, B 70 of 100: HR@1 differs by 0.3 with SE ~ sqrt(0.21/100); a miss
    costs MAE 1 (median slot 1 against exit 0), so MAE differs by -0.3: both are wins for A,
    and losses the other way round."""
    frame = _file([True] * 100, [True] * 70 + [False] * 30)
    rows = compare([("f", frame)], "A", "B", n_boot=1000, progress=False)
    hr1 = _by(rows, "HR@1")
    assert (hr1.a, hr1.b, hr1.diff) == pytest.approx((1.0, 0.7, 0.3))
    assert hr1.se == pytest.approx(np.sqrt(0.21 / 100), rel=0.1)
    assert hr1.verdict == "win"
    mae = _by(rows, "MAE")
    assert mae.diff == pytest.approx(-0.3) and mae.verdict == "win"
    assert _by(rows, "NDCG@5").diff == pytest.approx(0.3 * (1 - 1 / np.log2(3)))
    back = compare([("f", frame)], "B", "A", n_boot=200, progress=False)
    assert _by(back, "HR@1").verdict == "loss" and _by(back, "MAE").verdict == "loss"


def test_small_difference_is_a_tie():
    """One row of 100 apart: 0.01 with SE ~0.01 is inside 2 SE."""
    frame = _file([True] * 100, [True] * 99 + [False])
    assert (
        _by(compare([("f", frame)], "A", "B", n_boot=500, progress=False), "HR@1").verdict == "tie"
    )


def test_pooled_files_are_bootstrapped_within_each_file():
    """Two files: the pooled difference is the mean over all rows; a file where A and B
    agree adds no variance, so the SE is the first file's scaled by its share of rows."""
    f1 = _file([True] * 50, [True] * 25 + [False] * 25)  # diff 0.5 on 50 rows
    f2 = _file([True] * 150, [True] * 150)  # diff 0 on 150 rows
    rows = compare([("f1", f1), ("f2", f2)], "A", "B", n_boot=2000, progress=False)
    hr1 = _by(rows, "HR@1", "paper")
    assert hr1.diff == pytest.approx(0.5 * 50 / 200)
    assert hr1.se == pytest.approx(np.sqrt(0.25 / 50) * 50 / 200, rel=0.1)


def test_recomputed_metrics_match_the_report(tmp_path: Path):
    """metrics_from_frame on a written file gives evaluate_methods' numbers exactly."""
    from segint.report import evaluate_methods

    rng = np.random.default_rng(0)
    n = 60
    test = pl.DataFrame(
        {
            "user_id": rng.integers(0, 5, n),
            "video_id": np.r_[rng.integers(0, 8, 40), rng.integers(100, 104, 20)],
            "time_ms": np.arange(n),
            "duration_ms": rng.integers(1000, 20000, n),
            "play_time_ms": rng.integers(1, 25000, n),
        }
    ).with_columns(n_segments=(pl.col("duration_ms") + 4999) // 5000)
    test = test.with_columns(exit_slot=pl.Series(rng.integers(0, 5, n)).clip(0, test["n_segments"]))
    fit = test.head(40)
    methods = {
        m: (rng.integers(0, 3, (n, S + 1)).astype(float), rng.dirichlet(np.ones(S + 1), n))
        for m in ("X", "Y")
    }
    report = evaluate_methods(fit, test, methods, seed=3)
    assert report["rows"]["test_cold"] == 20
    path = tmp_path / "p.parquet"
    write_predictions(predictions_frame(fit, test, methods, seed=3), path)
    frame = pl.read_parquet(path)
    for protocol in ("paper", "strict"):
        for m in ("X", "Y"):
            got = metrics_from_frame(frame, m, protocol)
            assert got == pytest.approx(report[protocol][m], abs=1e-12, nan_ok=True)
            cold = metrics_from_frame(frame, m, protocol, frame["cold"].to_numpy())
            assert cold == pytest.approx(report[protocol + "_cold"][m], abs=1e-12, nan_ok=True)


def test_cli_end_to_end_and_bad_input(tmp_path: Path):
    """The table, the JSON, and one-line exit-2 errors for a missing method or file."""
    path = tmp_path / "p.parquet"
    write_predictions(_file([True] * 40, [False] * 40), path)
    out = tmp_path / "c.json"
    proc = segint("compare", str(path), "A", "B", "--bootstrap", "50", "--json", str(out),
                  "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "strict   HR@1" in proc.stdout and "win" in proc.stdout
    data = json.loads(out.read_text())
    assert data["rows"] == 40 and {c["verdict"] for c in data["comparisons"]} >= {"win"}
    for args in (
        [str(path), "A", "Z"],
        [str(tmp_path / "missing.parquet"), "A", "B"],
        [str(path), "A"],
        [str(path), "A", "A"],
        [str(path), "A", "B", "--bootstrap", "1"],
    ):
        proc = segint("compare", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_calibration_report_by_hand(tmp_path: Path):
    """Reliability bins and MAE by length on the hand-made file: A (all mass on the exit,
    slot 0) predicts completion 0 and completion never happens; B's median misses by 1."""
    from segint.calibration_report import calibration_tables, reliability

    r = reliability(np.array([0.05, 0.15, 0.95, 0.95]), np.array([False, True, True, False]), 2)
    assert r["rows"] == [2, 2] and r["observed"] == [0.5, 0.5]
    assert r["ECE"] == pytest.approx((2 * 0.4 + 2 * 0.45) / 4)
    path = tmp_path / "p.parquet"
    write_predictions(_file([True] * 10, [False] * 10), path)
    proc = segint(
        "plot", "calibration", str(path), "--methods", "A", "B", "--out", str(tmp_path / "r")
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("reliability.png", "watch_time_by_duration.png", "calibration.md"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    tables = json.loads((tmp_path / "r" / "calibration.json").read_text())
    assert tables["buckets"] == [{"N": "3-4", "seconds": "10-20", "rows": 10}]
    assert tables["by_duration"]["A"]["MAE"] == [0.0] and tables["by_duration"]["B"]["MAE"] == [1.0]
    assert tables["reliability"]["A"]["ECE"] == 0.0
    assert calibration_tables(pl.read_parquet(path), ["A"])["rows"] == 10
    bad = segint("plot", "calibration", str(path), "--methods", "Z", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_files_with_the_same_rows_share_the_bootstrap_draw():
    """The same rows in two files (one test split, two model seeds) are resampled together:
    two copies of a file give the SE of one file, not that SE over sqrt(2); files with other
    rows are drawn independently."""
    f = _file([True] * 100, [True] * 70 + [False] * 30)
    one = _by(compare([("a", f)], "A", "B", n_boot=1000, progress=False), "HR@1")
    twice = _by(compare([("a", f), ("b", f)], "A", "B", n_boot=1000, progress=False), "HR@1")
    assert twice.se == pytest.approx(one.se, rel=0.1)
    other = f.with_columns(time_ms=pl.col("time_ms") + 1)  # other rows, same values
    apart = _by(compare([("a", f), ("c", other)], "A", "B", n_boot=1000, progress=False), "HR@1")
    assert apart.se == pytest.approx(one.se / np.sqrt(2), rel=0.1)
