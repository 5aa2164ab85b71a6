"""`segint segrec train|evaluate|table` end to end on the 2,000-row KuaiRand fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.cli import main
from segint.splits import TEST, TRAIN, assign_split
from segrec.labels import fit_label
from segrec.train import load_run
from tests.segrec.conftest import make_interest_run

FAST = ["--max-epochs", "2", "--emb-dim", "8", "--hidden", "16", "--no-progress"]
CROSSFIT = ["--cross-fit", "2"]  # two fold models (of the fixture interest run's 1 epoch)


def train(
    tmp: Path, log: Path, backbone: str, mode: str, interest: Path | None, seed: int = 0
) -> Path:
    out = tmp / f"{backbone}-{mode}-{seed}"
    args = ["segrec", "train", "--backbone", backbone, "--mode", mode, "--data", str(log)]
    args += ["--format", "kuairand", "--seed", str(seed), "--out", str(out), *FAST]
    if interest is not None:
        args += ["--interest-model", str(interest), *CROSSFIT]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_train_evaluate_table_end_to_end(
    tmp_path: Path,
    fixture_log: Path,
    fixture_table: pl.DataFrame,
    interest_run: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every mode trains, evaluates on its split's test rows and lands in the table."""
    runs = [
        train(tmp_path, fixture_log, backbone, mode, interest_run)
        for backbone, mode in [
            ("widedeep", "video"),
            ("widedeep", "segsum"),
            ("widedeep", "segadjust"),
            ("widedeep", "itemposition"),
            ("widedeep", "segrec"),
            ("din", "segrec"),
            ("widedeep", "survival"),
            ("din", "features"),
        ]
    ]
    # a second seed of SegRec gives a spread; its interest model must be trained on seed 1
    interest1 = make_interest_run(tmp_path / "interest1", fixture_table, seed=1)
    runs.append(train(tmp_path, fixture_log, "widedeep", "segrec", interest1, seed=1))
    for run in runs:
        assert (run / "model.pt").is_file() and (run / "metrics.jsonl").read_text().strip()
    out_json = tmp_path / "eval.json"
    args = ["segrec", "evaluate", "--model", *map(str, runs), "--data", str(fixture_log)]
    assert main([*args, "--format", "kuairand", "--json", str(out_json), "--bootstrap", "30"]) == 0
    result = json.loads(out_json.read_text())
    # paired vs Video of the same backbone and seed: survival seed 0 only (no DIN Video run,
    # no WideDeep Video run of seed 1)
    paired = result["paired_vs_video"]
    assert set(paired) == {"widedeep"} and set(paired["widedeep"]) == {"segrec", "survival"}
    by_model = {r["model"]: r["metrics"] for r in result["runs"]}
    surv = paired["widedeep"]["survival"]["AUC"]
    want = by_model[str(runs[6])]["AUC"] - by_model[str(runs[0])]["AUC"]
    assert surv["pairs"] == 1 and surv["delta"] == pytest.approx(want) and surv["se"] > 0
    assert set(result["metrics"]) == {"widedeep", "din"}
    assert set(result["metrics"]["widedeep"]) == {
        "video",
        "segsum",
        "segadjust",
        "itemposition",
        "segrec",
        "survival",
    }
    assert set(result["metrics"]["din"]) == {"segrec", "features"}
    # the interest modes record their cross-fitting; all share one fold cache per interest run
    for run in runs[4:8]:
        crossfit = load_run(run).crossfit
        assert crossfit is not None and crossfit["k"] == 2
        assert crossfit["dir"] == str((interest_run / "crossfit_k2").resolve())
    seg = result["metrics"]["widedeep"]["segrec"]
    assert set(seg) == {"AUC", "F1", "LogLoss"} and 0.0 <= seg["AUC"] <= 1.0
    assert result["std"]["widedeep"]["segrec"]["AUC"] > 0  # two seeds, two test sets
    assert result["std"]["widedeep"]["video"]["AUC"] == 0  # one run
    # each run is scored on the test rows of its own split
    n_test = {
        s: int((assign_split(fixture_table, "random_per_user", s) == TEST).sum()) for s in (0, 1)
    }
    assert sorted({r["rows"] for r in result["runs"]}) == sorted(set(n_test.values()))
    assert sum(b["rows"] for b in result["runs"][0]["by_bucket"].values()) == n_test[0]
    capsys.readouterr()
    assert main(["segrec", "table", str(out_json), "--by-bucket"]) == 0
    table = capsys.readouterr().out
    assert "| WideDeep | SegRec (ID) | 2 |" in table and "| DIN | SegRec (ID) | 1 |" in table
    assert "SegRec vs best baseline (Welch)" in table and "0-30s" in table


def test_label_medians_come_from_training_rows(
    tmp_path: Path, fixture_log: Path, fixture_table: pl.DataFrame
) -> None:
    """The run stores the medians of its split's training rows, not of all rows."""
    run = load_run(train(tmp_path, fixture_log, "widedeep", "video", None))
    train_rows = fixture_table.filter(
        pl.Series(assign_split(fixture_table, "random_per_user", 0) == TRAIN)
    )
    want = fit_label(train_rows["play_time_ms"], train_rows["duration_ms"])
    every = fit_label(fixture_table["play_time_ms"], fixture_table["duration_ms"])
    assert run.label == want and run.label != every
    assert run.cfg.n_users == train_rows["user_id"].n_unique() + 1  # vocab of training rows


@pytest.mark.slow
def test_train_file_and_test_file(tmp_path: Path, fixture_table: pl.DataFrame) -> None:
    """--train FILE (last 10% by time validates) and evaluate --train FILE --test FILE."""
    t = fixture_table.sort("time_ms")
    cut = int(t.height * 0.8)
    for name, part in (("train.csv", t[:cut]), ("test.csv", t[cut:])):
        part.select(["user_id", "video_id", "time_ms", "duration_ms", "play_time_ms"]).write_csv(
            tmp_path / name
        )
    out = tmp_path / "run"
    args = [
        "segrec",
        "train",
        "--backbone",
        "din",
        "--mode",
        "segsum",
        "--train",
        str(tmp_path / "train.csv"),
    ]
    assert main([*args, "--format", "canonical", "--out", str(out), *FAST]) == 0
    interest = make_interest_run(tmp_path / "interest", t[:cut], seed=0, split="train_file")
    seg = tmp_path / "seg"
    args = [
        "segrec",
        "train",
        "--backbone",
        "widedeep",
        "--mode",
        "features",
        "--train",
        str(tmp_path / "train.csv"),
    ]
    args += ["--interest-model", str(interest), *CROSSFIT]
    assert main([*args, "--format", "canonical", "--out", str(seg), *FAST]) == 0
    res = tmp_path / "r.json"
    args = [
        "segrec",
        "evaluate",
        "--model",
        str(out),
        str(seg),
        "--train",
        str(tmp_path / "train.csv"),
    ]
    assert main([*args, "--test", str(tmp_path / "test.csv"), "--json", str(res)]) == 0
    runs = json.loads(res.read_text())["runs"]
    assert [r["rows"] for r in runs] == [t.height - cut] * 2
    assert all(np.isfinite(r["metrics"]["LogLoss"]) for r in runs)


def test_bad_input_exits_2(
    tmp_path: Path,
    fixture_log: Path,
    interest_run: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each mistake ends with exit code 2 and one line on stderr."""
    base = [
        "segrec",
        "train",
        "--backbone",
        "widedeep",
        "--data",
        str(fixture_log),
        "--format",
        "kuairand",
    ]
    cases = [
        [*base, "--mode", "segrec", "--out", str(tmp_path / "a")],  # no interest model
        [
            *base,
            "--mode",
            "segrec",
            "--seed",
            "3",
            "--interest-model",
            str(interest_run),
            "--out",
            str(tmp_path / "b"),
        ],
        [*base, "--mode", "video", "--bucket-edges", "0,30,30", "--out", str(tmp_path / "c")],
        [*base, "--mode", "video", "--hidden", "a,b", "--out", str(tmp_path / "d")],
        [*base, "--mode", "video", "--out", str(tmp_path / "e"), "--max-epochs", "0"],
        [
            *base,
            "--mode",
            "features",
            "--interest-model",
            str(interest_run),
            "--cross-fit",
            "1",
            "--out",
            str(tmp_path / "f"),
        ],
        ["segrec", "evaluate", "--model", str(tmp_path), "--data", str(fixture_log)],  # not a run
        [  # a negative number of bootstrap resamples
            "segrec",
            "evaluate",
            "--model",
            str(tmp_path),
            "--data",
            str(fixture_log),
            "--bootstrap",
            "-1",
        ],  # fmt: skip
        ["segrec", "table", str(fixture_log)],  # not an evaluate JSON
    ]
    for args in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err and "\n" not in err and "Traceback" not in err, (args, err)
    capsys.readouterr()
    assert main(cases[1]) == 2
    assert "trained on split random_per_user seed 0" in capsys.readouterr().err
    assert main(cases[-2]) == 2  # refused for the flag, before the runs are read
    assert "--bootstrap must be 0 (none) or >= 2, got -1" in capsys.readouterr().err


def test_evaluate_refuses_another_split_seed(
    tmp_path: Path, fixture_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = train(tmp_path, fixture_log, "widedeep", "video", None)
    capsys.readouterr()
    args = [
        "segrec",
        "evaluate",
        "--model",
        str(run),
        "--data",
        str(fixture_log),
        "--format",
        "kuairand",
    ]
    assert main([*args, "--seed", "2"]) == 2
    assert "overlap" in capsys.readouterr().err


def test_select_picks_the_best_validation_auc(
    tmp_path: Path, fixture_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segrec select` prints the run of the variant with the best mean validation AUC, read
    from the runs' metrics.jsonl (test rows play no part)."""
    runs = [train(tmp_path, fixture_log, "widedeep", m, None) for m in ("video", "segsum")]
    for run, auc in zip(runs, (0.61, 0.64), strict=True):  # pin the validation AUCs
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "AUC": auc}) + "\n")
    capsys.readouterr()
    out_json = tmp_path / "sel.json"
    assert main(["segrec", "select", "--model", *map(str, runs), "--json", str(out_json)]) == 0
    assert capsys.readouterr().out.strip() == str(runs[1])
    sel = json.loads(out_json.read_text())
    assert (
        sel["variant"] == "widedeep/segsum" and sel["valid_auc"]["widedeep/video"]["mean"] == 0.61
    )
    (runs[0] / "metrics.jsonl").write_text("")
    assert main(["segrec", "select", "--model", *map(str, runs)]) == 2
    assert "no validation AUC" in capsys.readouterr().err


@pytest.mark.slow
def test_effective_feature_and_platt_scaling(
    tmp_path: Path, fixture_log: Path, interest_run: Path
) -> None:
    """`--effective-feature --calibrate`: the run stores the per-N thresholds and a Platt
    scaling fitted on validation rows; evaluate applies it (same AUC, other LogLoss) unless
    `--uncalibrated`."""
    out = tmp_path / "features-eff"
    args = ["segrec", "train", "--backbone", "widedeep", "--mode", "features"]
    args += ["--data", str(fixture_log), "--format", "kuairand", "--out", str(out), *FAST]
    args += ["--interest-model", str(interest_run), *CROSSFIT]
    assert main([*args, "--effective-feature", "--calibrate"]) == 0
    run = load_run(out)
    assert run.cfg.method == "features+eff"
    assert len(run.cfg.effective_thresholds) == run.cfg.s_max
    assert run.cfg.effective_thresholds[0] == run.label.medians[0]  # N = 1: the 0-30 s bucket
    assert run.cfg.calibration != (1.0, 0.0) and run.cfg.calibration[0] > 0
    results = {}
    for flag in ([], ["--uncalibrated"]):
        js = tmp_path / f"eval{len(flag)}.json"
        ev = ["segrec", "evaluate", "--model", str(out), "--data", str(fixture_log)]
        assert main([*ev, "--format", "kuairand", "--json", str(js), *flag]) == 0
        results[len(flag)] = json.loads(js.read_text())["runs"][0]["metrics"]
    assert results[0]["AUC"] == pytest.approx(results[1]["AUC"], abs=1e-9)  # monotone map
    assert results[0]["LogLoss"] != pytest.approx(results[1]["LogLoss"], abs=1e-9)


@pytest.mark.slow
def test_round4_options_train_evaluate(
    tmp_path: Path, fixture_log: Path, interest_run: Path
) -> None:
    """`--set model.dense_both=true model.standardize_dense=true optim.ema=0.9
    optim.emb_weight_decay=1e-5` (DIN, features): the run stores the training rows' feature
    statistics and the options, and evaluates."""
    out = tmp_path / "din-both"
    args = ["segrec", "train", "--backbone", "din", "--mode", "features"]
    args += ["--data", str(fixture_log), "--format", "kuairand", "--out", str(out), *FAST]
    args += ["--interest-model", str(interest_run), *CROSSFIT, "--set", "model.dense_both=true"]
    args += ["model.standardize_dense=true", "optim.ema=0.9", "optim.emb_weight_decay=1e-5"]
    assert main(args) == 0
    run = load_run(out)
    assert run.cfg.method == "features+both+std"
    assert len(run.cfg.dense_center) == len(run.cfg.dense_scale) == 8
    assert all(s > 0 for s in run.cfg.dense_scale)
    assert run.train["ema"] == 0.9 and run.train["emb_weight_decay"] == 1e-5
    js = tmp_path / "eval.json"
    ev = ["segrec", "evaluate", "--model", str(out), "--data", str(fixture_log)]
    assert main([*ev, "--format", "kuairand", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["runs"][0]["method"] == "features+both+std@ema0.9,wd1e-05"
    bad = ["segrec", "train", "--backbone", "din", "--mode", "video", "--data", str(fixture_log)]
    bad += ["--format", "kuairand", "--out", str(tmp_path / "bad"), "--set"]
    assert main([*bad, "model.standardize_dense=true"]) == 2
    assert main([*bad, "optim.ema=1.5"]) == 2
