"""`segint baselines --learned din-slot,sasrec` end to end on a tiny real log."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from learned.summary import main as summary
from segint.metrics import METRIC_NAMES
from tests.cli import segint
from tests.paths import KUAIRAND_FIXTURE

NEURAL = ("din-slot", "sasrec")


def test_neural_baselines_through_the_cli(shared_data, tmp_path, capsys):
    """Both fit on the fixture's training rows, stop on its validation rows, and appear in
    every block of the report, in the predictions file with exit distributions, and in the
    summary tables of ``learned.summary --report learned-neural``."""
    out = tmp_path / "random_per_user-s1" / "learned-neural.json"
    pred = tmp_path / "p.parquet"
    proc = segint(
        "baselines",
        "--data",
        str(KUAIRAND_FIXTURE),
        "--format",
        "kuairand",
        "--split",
        "random_per_user",
        "--seed",
        "1",
        "--learned",
        ",".join(NEURAL),
        "--json",
        str(out),
        "--predictions",
        str(pred),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    for key in ("paper", "strict", "paper_cold", "strict_cold"):
        for name in NEURAL:
            assert set(report[key][name]) == set(METRIC_NAMES)
            assert all(np.isfinite(v) for v in report[key][name].values()), (key, name)
    n_train, n_test = report["rows"]["train"], report["rows"]["test"]
    for name in NEURAL:
        s = report["settings"][name]
        assert "validation rows of the random_per_user split, seed 1" in s["chosen_on"]
        n_fit = int(s["fitted_on"].split("(")[1].rstrip(")").replace(",", ""))
        assert 0 < n_fit < n_train  # training rows only: validation rows are not fitted on
        assert str(s["best_epoch"]) in s["valid_NDCG@5_strict_by_epoch"]
        assert s["train_seconds"] > 0
    rows = pl.read_parquet(pred)
    assert rows.height == n_test
    for name in NEURAL:
        dist = np.stack(rows[f"{name}.exit_dist"].to_list())
        np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-6)
    assert summary([str(tmp_path), "random_per_user", "--report", "learned-neural"]) == 0
    tables = capsys.readouterr().out
    assert all(f"| {name} | " in tables for name in NEURAL)
