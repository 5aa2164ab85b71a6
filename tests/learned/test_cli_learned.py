"""`segint baselines --learned` end to end on a tiny real log (2,000 KuaiRand-Pure rows)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from segint.baselines import BASELINES
from segint.data import CANONICAL
from segint.metrics import METRIC_NAMES, RANK_METRICS
from segint.predictions import metrics_from_frame, read_predictions
from tests.cli import segint
from tests.paths import KUAIRAND_FIXTURE

TREES = ("hazard-gbdt", "tpm", "d2q")
POINT_ONLY = {"d2q"}


def _check_report(report: dict, names: tuple[str, ...]) -> None:
    for key in ("paper", "strict", "paper_cold", "strict_cold"):
        assert set(report[key]) == set(BASELINES) | set(names)
        for name in names:
            want = set(METRIC_NAMES) - (set(RANK_METRICS) if name in POINT_ONLY else set())
            assert set(report[key][name]) == want, (key, name)
    for name in names:
        setting = report["settings"][name]
        assert "validation rows" in setting["chosen_on"] or "last 10%" in setting["chosen_on"]
        assert setting["train_seconds"] > 0
        assert setting["side_tables"] == ["video", "user"]
        losses = setting["validation_loss_by_encoding"]
        assert set(losses) == {"loo", "kfold"} and setting["encoding"] == min(
            losses, key=losses.get
        )


def test_split_json_and_predictions(shared_data, tmp_path):
    """Each tree learner on a split: the report layout, its settings, a predictions file whose
    recomputed metrics match the report, and a hazard-gbdt that beats Random."""
    out, pred = tmp_path / "r.json", tmp_path / "p.parquet"
    proc = segint(
        "baselines", "--data", str(KUAIRAND_FIXTURE), "--format", "kuairand",
        "--split", "random_per_user", "--seed", "0", "--learned", ",".join(TREES),
        "--json", str(out), "--predictions", str(pred),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    _check_report(report, TREES)
    frame = read_predictions(pred)
    for name in TREES:
        again = metrics_from_frame(frame, name, "strict")
        for m, v in report["strict"][name].items():
            assert again[m] == pytest.approx(v), (name, m)
    strict = report["strict"]
    assert strict["hazard-gbdt"]["NDCG@5"] > strict["Random"]["NDCG@5"]
    assert "d2q" in proc.stdout and "hazard-gbdt" in proc.stdout


def test_train_test_files(shared_data, tmp_path):
    """--train/--test: early stopping on the training file's last 10% by time."""
    raw = pl.read_csv(KUAIRAND_FIXTURE).sort("time_ms")
    cut = int(raw.height * 0.8)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    raw[:cut].write_csv(train)
    raw[cut:].write_csv(test)
    out = tmp_path / "r.json"
    proc = segint(
        "baselines", "--train", str(train), "--test", str(test), "--format", "kuairand",
        "--learned", "tpm,d2q,hazard-gbdt", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    _check_report(report, ("tpm", "d2q", "hazard-gbdt"))
    assert report["settings"]["tpm"]["chosen_on"].startswith("last 10% by time of train.csv")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learned", "xgboost"], "--learned: unknown baseline 'xgboost'"),
        (["--learned", "d2q", "--threads", "0"], "--threads must be >= 1"),
        (["--learned", "d2q", "--video-table", "/nonexistent.csv"], "no such side table"),
    ],
)
def test_bad_options_exit_2(shared_data, extra, message):
    """Bad --learned options end with exit code 2 and one line, no traceback."""
    proc = segint("baselines", "--data", str(KUAIRAND_FIXTURE), "--format", "kuairand", *extra)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_bundled_side_tables_only_for_kuairand_logs(shared_data, tmp_path):
    """A log of another format gets no KuaiRand side table unless one is given: its ids are
    not KuaiRand's (here they are, to show the rule follows the format, not the ids). Prepared
    data keeps the format it was read with."""
    from training.side import VIDEO_TABLE

    log = tmp_path / "log.csv"
    pl.read_csv(KUAIRAND_FIXTURE).select(CANONICAL).write_csv(log)
    for fmt, raw in (("kuairand", KUAIRAND_FIXTURE), ("canonical", log)):
        prep = segint(
            "data", "prepare", "--input", str(raw), "--format", fmt, "--out", str(tmp_path / fmt)
        )  # fmt: skip
        assert prep.returncode == 0, prep.stderr
    sources = {
        "canonical": ["--data", str(log), "--format", "canonical"],
        "canonical, a table given": [
            "--data", str(log), "--format", "canonical", "--video-table", str(VIDEO_TABLE)
        ],
        "prepared kuairand": ["--data", str(tmp_path / "kuairand")],
        "prepared canonical": ["--data", str(tmp_path / "canonical")],
    }  # fmt: skip
    tables = {}
    for name, source in sources.items():
        out = tmp_path / "r.json"
        proc = segint(
            "baselines", *source, "--split", "random_per_user", "--learned", "d2q",
            "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        tables[name] = json.loads(out.read_text())["settings"]["d2q"]["side_tables"]
    assert tables == {
        "canonical": [],
        "canonical, a table given": ["video"],
        "prepared kuairand": ["video", "user"],
        "prepared canonical": [],
    }
