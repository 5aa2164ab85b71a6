"""`segint train` and `segint evaluate` end to end, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segint.baselines import BASELINES, PRIOR_GRID
from segint.cli import build_parser, main
from segint.data import load_table
from segint.metrics import METRIC_NAMES, RANK_METRICS, ROW_METRICS
from segint.splits import TEST, assign_split, history_index
from tests.paths import KUAIRAND_FIXTURE, ROOT
from tests.training.conftest import TINY, make_log
from training.checkpoint import load_model, load_run_config
from training.data import InteractionDataset
from training.inference import evaluate_dataset

SECTIONS = ("paper", "strict", "paper_cold", "strict_cold")


def _check_layout(report: dict) -> None:
    assert set(report) == {*SECTIONS, "rows", "settings", "provenance", "paired"}
    assert report["settings"]["ItemPosition+prior|N"]["a"] in PRIOR_GRID
    assert report["settings"]["SegInterest"]["temperature"] > 0
    for section in SECTIONS:
        assert list(report[section]) == [*BASELINES, "SegInterest", "SegInterest(T=1)"]
        for metrics in report[section].values():
            assert list(metrics) == METRIC_NAMES


def test_train_and_evaluate_on_a_split(log_csv: Path, tmp_path: Path, capsys) -> None:
    """Train on a random split, evaluate on its test rows: SegInterest sits next to every
    baseline, and its numbers are the model's metrics on exactly the split's test rows."""
    run, report_path = tmp_path / "run", tmp_path / "report.json"
    common = ["--data", str(log_csv), "--format", "canonical"]
    assert main(["train", *common, "--config", str(TINY), "--out", str(run), "--no-progress"]) == 0
    assert "best validation NDCG@5" in capsys.readouterr().out
    for name in ("model.pt", "config.yaml", "vocab_users.npy", "vocab_videos.npy", "metrics.jsonl"):
        assert (run / name).is_file()
    assert main(["evaluate", "--model", str(run), *common, "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "SegInterest" in out and "[strict_cold]" in out
    report = json.loads(report_path.read_text())
    _check_layout(report)

    table = load_table(log_csv, "canonical")
    cfg = load_run_config(run)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    assert report["rows"]["test"] == int((split == TEST).sum())
    assert report["rows"]["train"] == int(((split == 0) | (split == 1)).sum())
    model, model_cfg, users, videos = load_model(run)
    test = InteractionDataset(
        table, history_index(table, cfg.data.history_len), np.flatnonzero(split == TEST),
        users, videos, model_cfg.s_max,
    )  # fmt: skip
    expected = evaluate_dataset(model, test, 64, "cpu", seed=0)
    for protocol in ("paper", "strict"):
        for metric in ROW_METRICS:  # XAUC needs watch times, which evaluate_dataset lacks
            got = report[protocol]["SegInterest(T=1)"][metric]
            assert got == pytest.approx(expected[protocol][metric], abs=1e-12)
        for metric in RANK_METRICS:  # the temperature leaves every ranking as it is
            got = report[protocol]["SegInterest"][metric]
            assert got == pytest.approx(expected[protocol][metric], abs=1e-12)
    assert (run / "calibration.json").is_file()


def test_evaluate_calibrates_a_refreshed_run_with_training_row_counts(
    log_csv: Path, tmp_path: Path
) -> None:
    """optim.refresh_counts: the validation rows that fit the temperature are scored with the
    training rows' exit counts (they are in the shipped counts), the test rows with the
    shipped (training + validation) counts."""
    from segint.splits import TRAIN, VALID
    from segint.watchtime import exit_nll
    from training.inference import predict_logits
    from training.train import set_prior_counts, table_counts_args

    run, report_path = tmp_path / "run", tmp_path / "report.json"
    common = ["--data", str(log_csv), "--format", "canonical"]
    train = ["train", *common, "--config", str(TINY), "--out", str(run), "--no-progress"]
    assert main([*train, "--set", "optim.refresh_counts=true"]) == 0
    assert main(["evaluate", "--model", str(run), *common, "--json", str(report_path)]) == 0
    calibration = json.loads((run / "calibration.json").read_text())
    table = load_table(log_csv, "canonical")
    cfg = load_run_config(run)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    model, model_cfg, users, videos = load_model(run)
    history = history_index(table, cfg.data.history_len)

    def data(rows: np.ndarray) -> InteractionDataset:
        return InteractionDataset(table, history, rows, users, videos, model_cfg.s_max)

    test = evaluate_dataset(model, data(np.flatnonzero(split == TEST)), 64, "cpu", seed=0)
    report = json.loads(report_path.read_text())
    assert report["strict"]["SegInterest(T=1)"]["NDCG@5"] == pytest.approx(
        test["strict"]["NDCG@5"], abs=1e-12
    )
    valid_rows = np.flatnonzero(split == VALID)
    vt = table[valid_rows]
    served = exit_nll(
        predict_logits(model, data(valid_rows), 64, "cpu"), vt["exit_slot"], vt["n_segments"], 1.0
    )
    set_prior_counts(model, *table_counts_args(table.filter(pl.Series(split == TRAIN)), videos))
    logits = predict_logits(model, data(valid_rows), 64, "cpu")
    honest = exit_nll(logits, vt["exit_slot"], vt["n_segments"], 1.0)
    assert calibration["nll_before"] == pytest.approx(honest, rel=1e-6)
    assert served != pytest.approx(honest, rel=1e-6)  # the shipped counts would have differed


def _two_files(tmp_path: Path) -> tuple[Path, Path, pl.DataFrame, pl.DataFrame]:
    log = make_log(n_users=30, n_videos=25, seed=3)
    cut = int(log["time_ms"].quantile(0.7))
    train_df, test_df = log.filter(pl.col("time_ms") < cut), log.filter(pl.col("time_ms") >= cut)
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train_df.write_csv(paths[0])
    test_df.write_csv(paths[1])
    return paths[0], paths[1], train_df, test_df


def test_train_file_then_test_file(tmp_path: Path) -> None:
    """`--train FILE` carves validation from the file's tail; evaluate scores the test file
    with cold = videos absent from the training file."""
    train_csv, test_csv, train_df, test_df = _two_files(tmp_path)
    run, report_path = tmp_path / "run", tmp_path / "report.json"
    args = ["--format", "canonical"]
    assert (
        main(
            [
                "train",
                "--train",
                str(train_csv),
                *args,
                "--config",
                str(TINY),
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert load_run_config(run).data.split == "train_file"
    cmd = ["evaluate", "--model", str(run), "--train", str(train_csv), "--test", str(test_csv)]
    assert main([*cmd, *args, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    _check_layout(report)
    cold = ~np.isin(test_df["video_id"].to_numpy(), train_df["video_id"].to_numpy())
    assert report["rows"] == {
        "train": train_df.height,
        "test": test_df.height,
        "test_cold": int(cold.sum()),
        "test_overlap_dropped": 0,  # the two files share no (user, video, time)
    }


def test_video_table_in_train_file_mode(tmp_path: Path) -> None:
    """`--train FILE` with optim.video_trees: the table is fitted on the file (stopped on its
    last 10%), without KuaiRand's side table for a canonical log, and `--train FILE --test
    LATER_FILE` serves it on the later file's warm rows."""
    from segint.video_table import read_run_table

    train_csv, test_csv, _, _ = _two_files(tmp_path)
    run, report_path = tmp_path / "run", tmp_path / "report.json"
    fmt = ["--format", "canonical"]
    train = ["train", "--train", str(train_csv), *fmt, "--config", str(TINY), "--out", str(run)]
    assert main([*train, "--no-progress", "--set", "optim.video_trees=0.5"]) == 0
    table = read_run_table(run)
    assert table is not None and table.meta["side_table"] is False
    assert load_run_config(run).optim.distill_side_tables is False
    cmd = ["evaluate", "--model", str(run), "--train", str(train_csv), "--test", str(test_csv)]
    assert main([*cmd, *fmt, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["SegInterest"]["video_table"]["mixed_rows"] > 0
    assert "SegInterest(network)" in report["strict"]


def test_test_histories_include_training_and_earlier_test_rows(tmp_path: Path) -> None:
    """In train/test-file mode a test row's history holds the user's training-file views and
    earlier test-file views."""
    from segint.commands.evaluate import load_rows
    from training.config import load_config

    train_csv, test_csv, _, _ = _two_files(tmp_path)
    args = build_parser().parse_args(
        [
            "evaluate",
            "--model",
            "x",
            "--train",
            str(train_csv),
            "--test",
            str(test_csv),
            "--format",
            "canonical",
        ]
    )
    table, fit_rows, test_rows, valid, _ = load_rows(args, load_config(TINY).data)
    hist = history_index(table, 20)
    is_test = np.zeros(table.height, bool)
    is_test[test_rows] = True
    sources = hist[test_rows][hist[test_rows] >= 0]
    assert (~is_test[sources]).any() and is_test[sources].any()
    assert len(fit_rows) + len(test_rows) == table.height


def test_real_kuairand_fixture(shared_data: Path, tmp_path: Path) -> None:
    """The 2,000-row raw KuaiRand-Pure sample trains and evaluates end to end."""
    run, report_path = tmp_path / "run", tmp_path / "r.json"
    common = ["--data", str(KUAIRAND_FIXTURE), "--format", "kuairand"]
    assert main(["train", *common, "--config", str(TINY), "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", "--model", str(run), *common, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    _check_layout(report)
    assert all(np.isfinite(v) for v in report["strict"]["SegInterest"].values())


def test_video_table_is_trained_and_evaluated_as_served(shared_data: Path, tmp_path: Path) -> None:
    """optim.video_trees: `segint train` writes RUN/video_trees.npz, and `segint evaluate`
    reports SegInterest as served (the network mixed with the table on the rows whose video
    has a row for their N) beside SegInterest(network); `--video-trees W` refits the table."""
    from segint.video_table import TABLE_FILE, read_run_table

    run, report_path, rows = tmp_path / "run", tmp_path / "r.json", tmp_path / "rows.parquet"
    common = ["--data", str(KUAIRAND_FIXTURE), "--format", "kuairand"]
    train = ["train", *common, "--config", str(TINY), "--out", str(run), "--no-progress"]
    assert main([*train, "--set", "optim.video_trees=0.5"]) == 0
    table = read_run_table(run)
    assert table is not None and table.weight == 0.5
    evaluate = ["evaluate", "--model", str(run), *common, "--json", str(report_path)]
    assert main([*evaluate, "--predictions", str(rows)]) == 0
    report = json.loads(report_path.read_text())
    assert list(report["strict"])[-3:] == [
        "SegInterest",
        "SegInterest(T=1)",
        "SegInterest(network)",
    ]
    mixed = report["settings"]["SegInterest"]["video_table"]
    assert mixed["weight"] == 0.5 and mixed["mixed_rows"] > 0
    frame = pl.read_parquet(rows)
    _, _, _, videos = load_model(run)
    idx = videos.lookup(frame["video_id"].to_numpy())
    use = table.mixed(idx, frame["n_segments"].to_numpy())
    assert use.sum() == mixed["mixed_rows"] and (~use).sum() > 0
    net = np.array(frame["SegInterest(network).exit_dist"].to_list())
    got = np.array(frame["SegInterest.exit_dist"].to_list())
    np.testing.assert_allclose(got[use], 0.5 * net[use] + 0.5 * table.dist[idx[use]], atol=1e-12)
    np.testing.assert_array_equal(got[~use], net[~use])
    assert main([*evaluate, "--video-trees", "0.25"]) == 0  # refit with another weight
    refit = read_run_table(run)
    assert refit is not None and refit.weight == 0.25
    np.testing.assert_allclose(refit.dist, table.dist, atol=1e-6)  # same fitting rows
    report = json.loads(report_path.read_text())
    assert report["settings"]["SegInterest"]["video_table"]["weight"] == 0.25
    (run / TABLE_FILE).unlink()
    assert main(evaluate) == 0
    _check_layout(json.loads(report_path.read_text()))  # no table: no SegInterest(network)


def _fail(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_bad_input_is_exit_2_with_one_line(log_csv: Path, tmp_path: Path, capsys) -> None:
    """Bad options, files and mismatches end with exit code 2 and one line on stderr."""
    data = ["--data", str(log_csv), "--format", "canonical"]
    train = ["train", *data, "--config", str(TINY), "--out", str(tmp_path / "r"), "--no-progress"]
    _fail(capsys, [*train, "--set", "optim.nope=1"], "optim.nope")
    _fail(capsys, [*train, "--set", "optim.lr=fast"], "optim.lr")
    _fail(capsys, [*train, "--set", "optim.video_trees=2"], "optim.video_trees")
    refit = ["--set", "optim.video_trees=0.5", "--set", "optim.refit=true"]
    _fail(capsys, [*train, *refit], "optim.refit")
    _fail(capsys, [*train, "--train", str(log_csv)], "either --data")
    _fail(
        capsys,
        ["train", "--train", str(log_csv), "--split", "temporal", "--out", "x"],
        "--split applies",
    )
    _fail(capsys, ["evaluate", "--model", str(tmp_path / "none"), *data], "not a training run")
    assert main(train) == 0
    capsys.readouterr()
    run = str(tmp_path / "r")
    _fail(
        capsys,
        ["evaluate", "--model", run, *data, "--seed", "1"],
        "trained on split random_per_user seed 0",
    )
    _fail(capsys, ["evaluate", "--model", run, *data, "--s-max", "30"], "s_max")
    _fail(capsys, ["evaluate", "--model", run, *data, "--video-trees", "0"], "--video-trees")
    _fail(
        capsys,
        ["evaluate", "--model", run, "--train", str(log_csv)],
        "--train FILE and --test FILE",
    )


def test_missing_file_subprocess_exit_2(tmp_path: Path) -> None:
    """Through the installed entry point: no traceback, one line, exit 2."""
    cmd = [sys.executable, "-m", "segint.cli", "train", "--data", str(tmp_path / "missing.csv"),
           "--format", "kuairand", "--out", str(tmp_path / "r")]  # fmt: skip
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and "missing.csv" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_prepared_logs_keep_their_side_tables(shared_data: Path, tmp_path: Path) -> None:
    """A log prepared from KuaiRand (`segint data prepare --format kuairand`) and given with no
    ``--format`` is still KuaiRand's: `segint train` fits the video table with KuaiRand's side
    table, and `segint evaluate --video-trees` refits it the same way, as `segint baselines`
    treats such a log (`segint.data.log_format`). A log prepared from the canonical format
    gets none (its ids are not KuaiRand's, here they are, to show the rule follows the
    format)."""
    from segint.data import CANONICAL
    from segint.video_table import read_run_table

    canonical = tmp_path / "log.csv"
    pl.read_csv(KUAIRAND_FIXTURE).select(CANONICAL).write_csv(canonical)
    side = {}
    for fmt, raw in (("kuairand", KUAIRAND_FIXTURE), ("canonical", canonical)):
        prepared, run = tmp_path / f"prepared-{fmt}", tmp_path / f"run-{fmt}"
        prepare = ["data", "prepare", "--input", str(raw), "--format", fmt, "--out", str(prepared)]
        assert main(prepare) == 0
        train = ["train", "--data", str(prepared), "--config", str(TINY), "--out", str(run)]
        assert main([*train, "--no-progress", "--set", "optim.video_trees=0.5"]) == 0
        table = read_run_table(run)
        assert table is not None
        refit = ["evaluate", "--model", str(run), "--data", str(prepared), "--video-trees", "0.25"]
        assert main(refit) == 0
        again = read_run_table(run)
        assert again is not None and again.weight == 0.25
        side[fmt] = (
            table.meta["side_table"],
            load_run_config(run).optim.distill_side_tables,
            again.meta["side_table"],
        )
    assert side == {"kuairand": (True, True, True), "canonical": (False, False, False)}
