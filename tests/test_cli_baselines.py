"""`segint baselines` end to end on real KuaiRand-Pure data."""

from __future__ import annotations

import hashlib
import json

import pytest

from segint.baselines import BASELINES, PRIOR_GRID
from segint.metrics import METRIC_NAMES
from tests.cli import segint
from tests.paths import KUAIRAND_FIXTURE, KUAIRAND_LOG


def test_random_split_report_layout_and_sanity(shared_data, tmp_path):
    """JSON layout of the issue; Random ~ K/40 under the paper protocol; ItemPosition beats it."""
    out = tmp_path / "b.json"
    proc = segint(
        "baselines",
        "--data",
        str(KUAIRAND_LOG),
        "--format",
        "kuairand",
        "--split",
        "random_per_user",
        "--seed",
        "0",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report) == {
        "paper", "strict", "paper_cold", "strict_cold", "rows", "settings", "provenance",
    }  # fmt: skip
    prov = report["provenance"]
    assert prov["files"][0]["sha256"] == hashlib.sha256(KUAIRAND_LOG.read_bytes()).hexdigest()
    assert prov["split"]["seed"] == 0 and prov["filters"]["s_max"] == 40
    assert prov["rows"]["test"] == report["rows"]["test"]
    chosen = report["settings"]["ItemPosition+prior|N"]
    assert (
        chosen["a"] in PRIOR_GRID
        and "validation rows of the random_per_user" in chosen["chosen_on"]
    )
    for key in ("paper", "strict", "paper_cold", "strict_cold"):
        assert set(report[key]) == set(BASELINES)
        assert all(set(m) == set(METRIC_NAMES) for m in report[key].values())
    rnd = report["paper"]["Random"]
    assert rnd["HR@1"] == pytest.approx(1 / 40, abs=0.01)
    assert rnd["HR@5"] == pytest.approx(5 / 40, abs=0.02)
    assert rnd["HR@10"] == pytest.approx(10 / 40, abs=0.03)
    assert (
        report["paper"]["ItemPosition"]["NDCG@5"]
        > report["paper"]["AllPosition"]["NDCG@5"]
        > rnd["NDCG@5"]
    )
    assert (
        report["rows"]["test"] > 3000 and 0 < report["rows"]["test_cold"] < report["rows"]["test"]
    )
    assert "[paper_cold]" in proc.stdout


def test_train_test_files(shared_data, tmp_path):
    """--train/--test evaluates a later log against statistics of the earlier one; the
    N-aware prior strength is chosen on the training file's last 10% by time."""
    out = tmp_path / "b.json"
    proc = segint(
        "baselines",
        "--train",
        str(KUAIRAND_LOG),
        "--test",
        str(KUAIRAND_FIXTURE),
        "--format",
        "kuairand",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ItemPosition+prior" in proc.stdout
    chosen = json.loads(out.read_text())["settings"]["ItemPosition+prior|N"]
    assert chosen["chosen_on"].startswith(f"last 10% by time of {KUAIRAND_LOG.name}")
    assert chosen["grid_NDCG@5"][str(chosen["a"])] == max(chosen["grid_NDCG@5"].values())


@pytest.mark.parametrize(
    "args",
    [
        ["baselines"],
        ["baselines", "--data", "missing.csv", "--format", "kuairand"],
        ["baselines", "--data", "x", "--train", "y", "--test", "z"],
        ["baselines", "--data", "x", "--split", "nope"],
        ["baselines", "--data", "x", "--prior-strength", "-1"],
        ["baselines", "--data", "x", "--prior-strength-n", "-1"],
        ["baselines", "--data", "x", "--prior-grid", "1", "-2"],
    ],
)
def test_bad_invocations_exit_2_with_one_line(args):
    """Every bad invocation: exit code 2, a single stderr line, no traceback."""
    proc = segint(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
