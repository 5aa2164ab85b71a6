"""SegRec's refusals: an interest model trained on other data than SegRec's split (it could
have trained on SegRec's test rows), evaluation on another file, and export of a CTR head
trained on other data than the exported interest model. Each is exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from segint import provenance
from segint.cli import main
from segint.data import Filters, load_table
from tests.segrec.conftest import make_interest_run
from tests.segrec.test_cli import FAST


def _with_provenance(run: Path, log: Path, filters: Filters = Filters()) -> Path:
    """Record in ``run`` (a fixture interest run) that it trained on ``log``'s seed-0 split."""
    rows = load_table(log, "kuairand", filters).height
    files = [provenance.file_record("data", log, "kuairand", rows)]
    split = provenance.split_record("random_per_user", 0, 1)
    provenance.write(run, provenance.record(files, "kuairand", filters, split))
    return run


def _copy_plus_one_row(src: Path, dst: Path) -> Path:
    """The log with its first row repeated at the end: other bytes, almost the same rows."""
    lines = src.read_text().splitlines(keepends=True)
    dst.write_text("".join([*lines, lines[1]]))
    return dst


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def _segrec_train(out: Path, log: Path, mode: str, interest: Path | None = None) -> list[str]:
    args = ["segrec", "train", "--backbone", "widedeep", "--mode", mode, "--data", str(log)]
    args += ["--format", "kuairand", "--out", str(out), *FAST, "--cross-fit", "0"]
    return args + (["--interest-model", str(interest)] if interest else [])


def test_train_refuses_an_interest_model_of_other_filters_or_another_file(
    tmp_path: Path,
    fixture_log: Path,
    fixture_table: pl.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same split and seed, but the interest model read other filters / another file."""
    strict = Filters(min_play_ms=2000)
    interest = _with_provenance(
        make_interest_run(tmp_path / "i1", fixture_table, 0), fixture_log, strict
    )
    args = _segrec_train(tmp_path / "r1", fixture_log, "segrec", interest)
    _refused(capsys, args, "other filters (min_play_ms 2000 -> 1)")
    other = _copy_plus_one_row(fixture_log, tmp_path / "other.csv")
    interest2 = _with_provenance(make_interest_run(tmp_path / "i2", fixture_table, 0), other)
    args = _segrec_train(tmp_path / "r2", fixture_log, "segrec", interest2)
    _refused(capsys, args, "a different file")
    # the control: the interest model of this very source trains
    interest3 = _with_provenance(make_interest_run(tmp_path / "i3", fixture_table, 0), fixture_log)
    assert main(_segrec_train(tmp_path / "r3", fixture_log, "segrec", interest3)) == 0
    run = json.loads((tmp_path / "r3" / "segrec.json").read_text())
    assert (
        run["source"]["provenance"]["files"][0]["sha256"]
        == (json.loads((interest3 / "provenance.json").read_text())["files"][0]["sha256"])
    )


def test_evaluate_refuses_another_file_and_export_another_source(
    tmp_path: Path,
    fixture_log: Path,
    fixture_table: pl.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run trained on log A is not evaluated on the same split of log A' (it used to be a
    warning), and is not exported next to an interest model trained on A'."""
    other = _copy_plus_one_row(fixture_log, tmp_path / "other.csv")
    assert main(_segrec_train(tmp_path / "video", fixture_log, "video")) == 0
    args = ["segrec", "evaluate", "--model", str(tmp_path / "video"), "--data", str(other)]
    _refused(capsys, [*args, "--format", "kuairand"], "a different file")
    args[-1] = str(fixture_log)
    assert main([*args, "--format", "kuairand", "--bootstrap", "0"]) == 0
    interest = _with_provenance(make_interest_run(tmp_path / "i", fixture_table, 0), other)
    export = ["export", "--model", str(interest), "--segrec", str(tmp_path / "video")]
    _refused(capsys, [*export, "--out", str(tmp_path / "art")], "a different file")
    assert not (tmp_path / "art").exists()


def test_evaluate_drops_test_file_rows_that_are_in_the_training_file(
    tmp_path: Path, fixture_table: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    """--train A --test B: B's rows also in A are dropped and counted."""
    t = fixture_table.sort("time_ms").select(
        ["user_id", "video_id", "time_ms", "duration_ms", "play_time_ms"]
    )
    cut = int(t.height * 0.8)
    t[:cut].write_csv(tmp_path / "train.csv")
    pl.concat([t[cut:], t[:20]]).write_csv(tmp_path / "test.csv")
    run = tmp_path / "run"
    args = ["segrec", "train", "--backbone", "widedeep", "--mode", "video"]
    args += ["--train", str(tmp_path / "train.csv"), "--format", "canonical"]
    assert main([*args, "--out", str(run), *FAST]) == 0
    res = tmp_path / "r.json"
    args = ["segrec", "evaluate", "--model", str(run), "--train", str(tmp_path / "train.csv")]
    capsys.readouterr()
    assert main([*args, "--test", str(tmp_path / "test.csv"), "--json", str(res)]) == 0
    assert "dropped 20 of" in capsys.readouterr().out
    (r,) = json.loads(res.read_text())["runs"]
    assert r["rows"] == t.height - cut
    assert r["source"]["provenance"]["rows"]["test_overlap_dropped"] == 20


def test_train_refuses_a_random_split_interest_model_without_provenance(
    tmp_path: Path,
    fixture_log: Path,
    fixture_table: pl.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An interest model from before provenance was trained on the old random_per_user rows:
    most of SegRec's test rows could be its training rows."""
    interest = make_interest_run(tmp_path / "old", fixture_table, 0, log=None)
    args = _segrec_train(tmp_path / "r", fixture_log, "segrec", interest)
    _refused(capsys, args, "predates the row-hash-v1 random_per_user assignment")
