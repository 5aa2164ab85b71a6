"""The verifier's path: `segint train --train EARLY` then `segint evaluate --train EARLY --test
LATER --learned hazard-gbdt` on a slice of the real KuaiRand log, split by date as a later week
would be (raw format, `--format kuairand`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.baselines import BASELINES, PRIOR_GRID
from segint.cli import main
from segint.data import Filters, load_table
from segint.metrics import METRIC_NAMES, eligible_slots, renormalised
from segint.predictions import method_arrays, read_predictions
from segint.source import carve_validation
from segint.splits import VALID
from segint.watchtime import median_exit_slot
from tests.paths import KUAIRAND_LOG
from tests.training.conftest import TINY

METHODS = [*BASELINES, "SegInterest", "SegInterest(T=1)", "hazard-gbdt"]
SECTIONS = ("paper", "strict", "paper_cold", "strict_cold")
BOOT = 50


@pytest.fixture(scope="module")
def later_week(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw KuaiRand rows of every 40th user: 04-25..28 (training file) and 04-29..30 (later
    file); a model trained on the first; evaluate's report and predictions of both."""
    tmp = tmp_path_factory.mktemp("later_week")
    log = pl.read_csv(KUAIRAND_LOG, infer_schema_length=0)  # strings: values written back as read
    log = log.filter(pl.col("user_id").cast(pl.Int64) % 40 == 0)
    early, later = tmp / "early.csv", tmp / "later.csv"
    log.filter(pl.col("date").cast(pl.Int64) <= 20220428).write_csv(early)
    log.filter(pl.col("date").cast(pl.Int64) >= 20220429).write_csv(later)
    run, report, rows = tmp / "run", tmp / "report.json", tmp / "rows.parquet"
    fmt = ["--format", "kuairand"]
    train = ["train", "--train", str(early), *fmt, "--config", str(TINY), "--out", str(run)]
    assert main([*train, "--no-progress"]) == 0
    evaluate = ["evaluate", "--model", str(run), "--train", str(early), "--test", str(later)]
    evaluate += [*fmt, "--learned", "hazard-gbdt", "--bootstrap", str(BOOT)]
    assert main([*evaluate, "--json", str(report), "--predictions", str(rows)]) == 0
    return {"early": early, "later": later, "run": run, "report": report, "rows": rows}


def test_report_names_every_method_with_xauc(later_week: dict[str, Path]) -> None:
    """The N-aware lookups under their exact names, the model, the learned baseline; every
    metric (XAUC included) for every method in every section."""
    report = json.loads(later_week["report"].read_text())
    assert set(report) == {*SECTIONS, "rows", "settings", "provenance", "paired"}
    for section in SECTIONS:
        assert list(report[section]) == METHODS
        for metrics in report[section].values():
            assert list(metrics) == METRIC_NAMES
    for name, metrics in report["strict"].items():
        assert all(np.isfinite(v) for v in metrics.values()), name


def test_prior_strength_and_temperature_are_chosen_on_the_training_files_tail(
    later_week: dict[str, Path],
) -> None:
    """``a`` and the temperature: chosen on the training file's last 10% by time, and the
    report says so; hazard-gbdt stops early on the same rows."""
    report = json.loads(later_week["report"].read_text())
    table = load_table(later_week["early"], "kuairand", Filters())
    n_valid = int((carve_validation(table) == VALID).sum())
    where = f"last 10% by time of early.csv ({n_valid:,} rows)"
    prior = report["settings"]["ItemPosition+prior|N"]
    assert prior["chosen_on"] == where and prior["a"] in PRIOR_GRID
    assert set(prior["grid_NDCG@5"]) == {str(a) for a in PRIOR_GRID}
    assert report["settings"]["SegInterest"]["fitted_on"] == where
    assert report["settings"]["hazard-gbdt"]["chosen_on"] == where
    assert report["rows"]["train"] == table.height


def test_seginterest_mae_is_the_served_median_of_the_calibrated_distribution(
    later_week: dict[str, Path],
) -> None:
    """``SegInterest`` is the temperature-scaled distribution (``p^(1/T)`` renormalised over
    the real outcomes of the uncalibrated one) and its MAE the median slot's error."""
    report = json.loads(later_week["report"].read_text())
    frame = read_predictions(later_week["rows"])
    temperature = report["settings"]["SegInterest"]["temperature"]
    n_seg, target = frame["n_segments"].to_numpy(), frame["exit_slot"].to_numpy()
    real = eligible_slots(n_seg, 40, "strict")
    _, raw = method_arrays(frame, "SegInterest(T=1)")
    _, served = method_arrays(frame, "SegInterest")
    scaled = renormalised(np.where(real, raw, 0.0) ** (1.0 / temperature), real)
    np.testing.assert_allclose(renormalised(served, real), scaled, atol=1e-6)
    mae = np.abs(median_exit_slot(renormalised(served, real)) - target).mean()
    assert report["strict"]["SegInterest"]["MAE"] == pytest.approx(mae, abs=1e-12)
    assert report["settings"]["SegInterest"]["MAE_of"].startswith("MAE: median exit slot")


def test_cold_rows_are_reported(later_week: dict[str, Path]) -> None:
    """Cold rows: later-file videos absent from the training file, in the rows, the *_cold
    sections and the paired entry."""
    report = json.loads(later_week["report"].read_text())
    early = load_table(later_week["early"], "kuairand", Filters())
    later = load_table(later_week["later"], "kuairand", Filters())
    cold = ~np.isin(later["video_id"].to_numpy(), early["video_id"].to_numpy())
    assert report["rows"]["test"] == later.height
    assert report["rows"]["test_cold"] == int(cold.sum()) > 0
    assert report["paired"]["cold"]["rows"] == int(cold.sum())
    assert list(report["strict_cold"]) == METHODS


def test_paired_differences_are_segint_compares(later_week: dict[str, Path], tmp_path) -> None:
    """``paired``: SegInterest minus every other method on the same rows; the difference is
    the difference of the report's means, and `segint compare` on the predictions file gives
    the same difference and standard error."""
    report = json.loads(later_week["report"].read_text())
    paired = report["paired"]
    assert paired["A"] == "SegInterest" and paired["bootstrap"] == BOOT
    assert list(paired["all"]["vs"]) == [m for m in METHODS if m != "SegInterest"]
    for b in ("ItemPosition+prior|N", "AllPosition|N", "hazard-gbdt"):
        for metric in METRIC_NAMES:
            d = paired["all"]["vs"][b]["strict"][metric]
            want = report["strict"]["SegInterest"][metric] - report["strict"][b][metric]
            assert d["diff"] == pytest.approx(want, abs=1e-9), (b, metric)
            assert d["se"] > 0 and d["verdict"] in ("win", "tie", "loss")
    out = tmp_path / "cmp.json"
    argv = ["compare", str(later_week["rows"]), "SegInterest", "ItemPosition+prior|N"]
    assert main([*argv, "--bootstrap", str(BOOT), "--no-progress", "--json", str(out)]) == 0
    for row in json.loads(out.read_text())["comparisons"]:
        d = paired["all"]["vs"]["ItemPosition+prior|N"][row["protocol"]][row["metric"]]
        assert (d["diff"], d["se"]) == pytest.approx((row["diff"], row["se"]), abs=1e-12)


def _fail(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (OneLineParser: one line, exit 2)
        code = e.code
    assert code == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_bad_flags_are_exit_2_with_one_line(
    later_week: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every bad flag of the verifier's evaluate call: exit code 2, one line naming it."""
    ok = ["evaluate", "--model", str(later_week["run"]), "--train", str(later_week["early"])]
    ok += ["--test", str(later_week["later"]), "--format", "kuairand"]
    for extra, message in (
        (["--learned", "nope"], "--learned: unknown baseline 'nope'"),
        (["--learned", ","], "--learned"),
        (["--learned", "hazard-gbdt", "--threads", "0"], "--threads must be >= 1"),
        (["--bootstrap", "1"], "--bootstrap"),
        (["--bootstrap", "-3"], "--bootstrap"),
        (["--bootstrap", "x"], "--bootstrap"),
        (["--threads", "-1"], "--threads"),
        (["--batch-size", "0"], "--batch-size"),
        (["--prior-grid", "nan"], "--prior-grid"),
        (["--prior-strength-n", "-1"], "--prior-strength-n"),
        (["--temperature-by", "mse"], "--temperature-by"),
        (["--format", "csv"], "--format"),
        (["--s-max", "30"], "s_max"),
        (["--data", str(later_week["later"])], "either --data"),
    ):
        _fail(capsys, [*ok, *extra], message)
    missing = str(later_week["later"].parent / "missing.csv")
    _fail(capsys, [*ok[:-4], "--test", missing, "--format", "kuairand"], "missing.csv")
    _fail(capsys, [*ok[:5], "--format", "kuairand"], "--train FILE and --test FILE")
    _fail(capsys, ["evaluate", "--model", str(later_week["early"]), *ok[3:]], "not a training run")
