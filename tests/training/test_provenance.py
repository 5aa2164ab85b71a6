"""Provenance of interest-model runs and the refusals of `segint evaluate` / `segint export`:
never score a model on rows it trained on, or on a split of other data or other filters."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from segint.cli import main
from tests.training.conftest import TINY, make_log

CANON = ["--format", "canonical"]


def _train(out: Path, *source: str) -> Path:
    args = ["train", *source, *CANON, "--config", str(TINY), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A log A, a later log B holding 15 of A's rows, and two tiny models trained on A: one on
    its random_per_user split (seed 0), one on the whole file (--train)."""
    tmp = tmp_path_factory.mktemp("prov")
    log_a = make_log(seed=0)
    log_a.write_csv(tmp / "a.csv")
    later = make_log(seed=1, t0=10**13)
    pl.concat([later, log_a[:15]]).write_csv(tmp / "b.csv")
    return {
        "a": tmp / "a.csv",
        "b": tmp / "b.csv",
        "split": _train(tmp / "split_run", "--data", str(tmp / "a.csv")),
        "file": _train(tmp / "file_run", "--train", str(tmp / "a.csv")),
        "tmp": tmp,
    }


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    """Exit 2 with exactly one line on stderr containing ``words``."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_train_records_file_hash_rows_filters_and_split(runs: dict[str, Path]) -> None:
    """provenance.json: sha256 of the bytes read, rows per split summing to the file's rows
    after filters, the filters and the split definition."""
    prov = json.loads((runs["split"] / "provenance.json").read_text())
    (f,) = prov["files"]
    assert f["role"] == "data" and f["sha256"] == hashlib.sha256(runs["a"].read_bytes()).hexdigest()
    assert f["rows"] == make_log(seed=0).height
    assert sum(prov["rows"][k] for k in ("train", "valid", "test", "dropped")) == f["rows"]
    assert prov["split"]["method"] == "random_per_user" and prov["split"]["seed"] == 0
    assert prov["split"]["assignment"] == "row-hash-v1"
    assert prov["filters"]["s_max"] == 40 and prov["format"] == "canonical"
    file_prov = json.loads((runs["file"] / "provenance.json").read_text())
    assert file_prov["files"][0]["role"] == "train" and file_prov["split"]["method"] == "train_file"


def test_evaluate_refuses_a_split_of_the_file_a_model_trained_on_whole(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A model trained with --train A has seen every row of A: --data A --split S is refused."""
    args = ["evaluate", "--model", str(runs["file"]), "--data", str(runs["a"]), *CANON]
    _refused(capsys, [*args, "--split", "random_per_user"], "trained on a whole file")


def test_evaluate_refuses_another_file_for_the_same_split(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Same split name and seed, different bytes (one row added): refused."""
    other = runs["tmp"] / "a_plus.csv"
    pl.concat([make_log(seed=0), make_log(seed=2)[:1]]).write_csv(other)
    args = ["evaluate", "--model", str(runs["split"]), "--data", str(other), *CANON]
    _refused(capsys, args, "a different file")


def test_evaluate_refuses_other_filters_for_the_same_split(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Same file and split, other filters: refused, naming the filter that changed."""
    args = ["evaluate", "--model", str(runs["split"]), "--data", str(runs["a"]), *CANON]
    _refused(capsys, [*args, "--min-play-ms", "2000"], "min_play_ms 1 -> 2000")


def test_evaluate_refuses_another_training_file_for_a_file_pair(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--train X --test Y for a model trained on A: Y's rows could be A's, so X must be A."""
    args = ["evaluate", "--model", str(runs["file"]), "--train", str(runs["b"])]
    _refused(capsys, [*args, "--test", str(runs["a"]), *CANON], "a different file")


def test_evaluate_drops_test_rows_that_are_in_the_training_file(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """B holds 15 rows of A: they are dropped, printed, and counted in the JSON's rows."""
    out = runs["tmp"] / "eval.json"
    args = ["evaluate", "--model", str(runs["file"]), "--train", str(runs["a"])]
    capsys.readouterr()
    assert main([*args, "--test", str(runs["b"]), *CANON, "--json", str(out)]) == 0
    assert "dropped 15 of" in capsys.readouterr().out
    report = json.loads(out.read_text())
    b_rows = pl.read_csv(runs["b"]).height
    assert report["rows"]["test_overlap_dropped"] == 15
    assert report["rows"]["test"] == b_rows - 15
    files = {f["role"]: f for f in report["provenance"]["files"]}
    assert files["test"]["rows"] == b_rows and files["train"]["path"] == str(runs["a"].resolve())


def test_evaluate_accepts_its_own_split(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the model's own file, filters and split evaluate (exit 0)."""
    args = ["evaluate", "--model", str(runs["split"]), "--data", str(runs["a"]), *CANON]
    assert main(args) == 0


def test_export_records_the_run_provenance(runs: dict[str, Path]) -> None:
    """The artifact manifest carries the training run's provenance record."""
    out = runs["tmp"] / "artifact"
    assert main(["export", "--model", str(runs["split"]), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["provenance"] == json.loads(
        (runs["split"] / "provenance.json").read_text()
    )


def test_a_random_split_run_without_provenance_is_refused(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run made before provenance (and the row-hash split) was assigned its rows by the
    old rule: on today's random_per_user split most test rows trained it. Refused; a file
    run without provenance still evaluates on a file pair (with a warning)."""
    old = runs["tmp"] / "old_split_run"
    shutil.copytree(runs["split"], old)
    (old / "provenance.json").unlink()
    args = ["evaluate", "--model", str(old), "--data", str(runs["a"]), *CANON]
    _refused(capsys, args, "predates the row-hash-v1 random_per_user assignment")
    old_file = runs["tmp"] / "old_file_run"
    shutil.copytree(runs["file"], old_file)
    (old_file / "provenance.json").unlink()
    args = ["evaluate", "--model", str(old_file), "--train", str(runs["a"])]
    assert main([*args, "--test", str(runs["b"]), *CANON]) == 0
