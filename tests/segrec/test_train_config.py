"""`segint segrec train --config FILE --set KEY=VALUE`: defaults, overrides, shorthands, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segint.cli import build_parser, main
from segint.commands.segrec import TRAIN_CONFIG_FILE, _train_config
from segrec.train import load_run
from segrec.train_config import DEFAULT_CONFIG, SegRecTrainConfig, from_dict, load_config

# The defaults of the argparse flags before the YAML config (commit 8a1a135), written out, and
# the round-4 keys (off by default, so that the old runs' settings stay the defaults).
OLD_FLAG_DEFAULTS = {
    "data": {
        "split": "random_per_user",
        "seed": 0,
        "min_interactions": 1,
        "s_max": 40,
        "bucket_edges": [0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 200.0],
    },
    "model": {
        "backbone": "",  # was required
        "mode": "",  # was required
        "history_len": 20,
        "emb_dim": 32,
        "hidden": [64],
        "activation": "dice",
        "dropout": 0.0,
        "learn_temperature": False,
        "effective_feature": False,
        "dense_linear": False,
        "dense_both": False,  # round 4, no flag
        "standardize_dense": False,  # round 4, no flag
    },
    "optim": {
        "lr": 1e-3,
        "batch_size": 512,
        "max_epochs": 20,
        "patience": 3,
        "calibrate": False,
        "ema": 0.0,  # round 4, no flag
        "emb_weight_decay": 0.0,  # round 4, no flag
        "eval_every": 0,  # round 4, no flag
        "zero_init_dense": False,  # round 4, no flag
    },
    "crossfit": {"k": 5, "epochs": 0},  # epochs 0: the interest run's (the flag's None)
}
BASE = ["segrec", "train", "--data", "log.csv", "--out", "run"]


def resolve(*argv: str) -> SegRecTrainConfig:
    return _train_config(build_parser().parse_args([*BASE, *argv]))


def test_yaml_defaults_are_the_old_flag_defaults() -> None:
    """configs/segrec.yaml, the dataclass defaults and the old flag defaults agree key by key."""
    from_yaml = load_config(DEFAULT_CONFIG).to_dict()
    assert from_yaml == OLD_FLAG_DEFAULTS
    assert from_dict({}).to_dict() == OLD_FLAG_DEFAULTS
    # ... with the same types (a recorded config reads 0.0, not 0)
    assert yaml.safe_dump(from_dict({}).to_dict()) == yaml.safe_dump(from_yaml)
    # the command line with only the required choices resolves to the same
    cfg = resolve("--backbone", "din", "--mode", "segrec").to_dict()
    assert cfg["model"] | {"backbone": "", "mode": ""} == OLD_FLAG_DEFAULTS["model"]
    assert {k: v for k, v in cfg.items() if k != "model"} == {
        k: v for k, v in OLD_FLAG_DEFAULTS.items() if k != "model"
    }


def test_set_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {backbone: din, mode: video, emb_dim: 8}\noptim: {lr: 0.01}\n")
    cfg = resolve(
        "--config",
        str(config),
        "--set",
        "optim.lr=3e-4",
        "model.hidden=[32,16]",
        "data.bucket_edges=0,60,200",
        "model.learn_temperature=false",
        "crossfit.k=0",
    )
    assert cfg.model.backbone == "din" and cfg.model.emb_dim == 8  # from the file
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.model.hidden == (32, 16) and cfg.data.bucket_edges == (0.0, 60.0, 200.0)
    assert cfg.crossfit.k == 0
    one = resolve("--set", "model.hidden=64", "model.backbone=din", "model.mode=video")
    assert one.model.hidden == (64,)


def test_shorthands_equal_set() -> None:
    """Every old flag gives the same config as --set of its key; a shorthand wins over --set."""
    flags = [
        *("--backbone", "din", "--mode", "features", "--split", "temporal", "--seed", "3"),
        *("--min-interactions", "2", "--s-max", "30", "--bucket-edges", "0,50,150"),
        *("--history-len", "5", "--emb-dim", "8", "--hidden", "16,8", "--activation", "prelu"),
        *("--dropout", "0.25", "--effective-feature", "--dense-linear", "--calibrate"),
        *("--lr", "0.002", "--batch-size", "64", "--max-epochs", "4", "--patience", "1"),
        *("--cross-fit", "3", "--cross-fit-epochs", "2"),
    ]
    sets = [
        *("model.backbone=din", "model.mode=features", "data.split=temporal", "data.seed=3"),
        *("data.min_interactions=2", "data.s_max=30", "data.bucket_edges=[0,50,150]"),
        *("model.history_len=5", "model.emb_dim=8", "model.hidden=[16,8]"),
        *("model.activation=prelu", "model.dropout=0.25", "model.effective_feature=true"),
        *("model.dense_linear=true", "optim.calibrate=true", "optim.lr=0.002"),
        *("optim.batch_size=64", "optim.max_epochs=4", "optim.patience=1"),
        *("crossfit.k=3", "crossfit.epochs=2"),
    ]
    by_flags, by_set = resolve(*flags), resolve("--set", *sets)
    assert by_flags == by_set
    assert by_flags != from_dict({"model": {"backbone": "din", "mode": "features"}})
    both = resolve("--set", *sets, "--lr", "0.005", "--learn-temperature", "--mode", "segrec")
    assert both.optim.lr == 0.005 and both.model.learn_temperature and both.model.mode == "segrec"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "optim.momentum=0.9"], "unknown config key 'optim.momentum'"),
        (["--set", "nosection.lr=1"], "unknown config key 'nosection.lr'"),
        (["--set", "optim.lr=nan"], "must be a finite number"),
        (["--set", "optim.lr=.inf"], "must be a finite number"),
        (["--set", "data.bucket_edges=[0,nan,200]"], "must be a finite number"),
        (["--set", "optim.batch_size=big"], "'optim.batch_size': expected int"),
        (["--set", "optim.batch_size=1.5"], "'optim.batch_size': expected int"),
        (["--set", "model.dense_linear=maybe"], "'model.dense_linear': expected bool"),
        (["--set", "model.hidden=[64,wide]"], "'model.hidden': expected int"),
        (["--set", "model.activation=relu"], "model.activation must be one of"),
        (["--set", "crossfit.k=1"], "crossfit.k must be 0 (off) or >= 2"),
        (["--set", "optim.lr"], "is not KEY=VALUE"),
        (["--hidden", "64,x"], "--hidden must be comma-separated numbers"),
        (["--cross-fit-epochs", "0"], "--cross-fit-epochs must be >= 1"),
    ],
)
def test_bad_config_is_exit_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["segrec", "train", "--backbone", "widedeep", "--mode", "video", "--data", "x.csv"]
    assert main([*args, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()  # refused before anything was written


def test_bad_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["segrec", "train", "--backbone", "din", "--mode", "video", "--data", "x.csv"]
    args += ["--out", str(tmp_path / "run"), "--config"]
    bad = tmp_path / "bad.yaml"
    for text, message in [
        ("optim: {lr: .nan}\n", "must be a finite number"),
        ("model: {emb_size: 8}\n", "unknown config key 'model.emb_size'"),
        ("loss: bce\n", "unknown config key 'loss'"),
        ("optim: [1, 2]\n", "must be a mapping"),
    ]:
        bad.write_text(text)
        assert main([*args, str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert main([*args, str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert main(["segrec", "train", "--mode", "video", "--data", "x", "--out", "y"]) == 2
    assert "give --backbone (config key model.backbone)" in capsys.readouterr().err


def test_config_file_trains_like_flags(
    tmp_path: Path, fixture_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run configured by YAML records the same model and options as the flag run, and the
    resolved train_config.yaml trains it again; evaluate and select read both runs."""
    common = ["segrec", "train", "--data", str(fixture_log), "--format", "kuairand"]
    common += ["--no-progress", "--seed", "1"]
    by_flags = tmp_path / "flags"
    flags = ["--backbone", "widedeep", "--mode", "video", "--max-epochs", "2", "--emb-dim", "8"]
    assert main([*common, "--out", str(by_flags), *flags, "--hidden", "16,8"]) == 0
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {backbone: widedeep, mode: video, emb_dim: 8, hidden: [16, 8]}\n"
        "optim: {max_epochs: 2}\n"
    )
    by_yaml = tmp_path / "yaml"
    assert main([*common, "--out", str(by_yaml), "--config", str(config)]) == 0
    again = tmp_path / "again"
    recorded = by_yaml / TRAIN_CONFIG_FILE
    assert main([*common, "--out", str(again), "--config", str(recorded)]) == 0
    runs = [json.loads((d / "segrec.json").read_text()) for d in (by_flags, by_yaml, again)]
    for run in runs[1:]:
        assert run["model"] == runs[0]["model"] and run["train"] == runs[0]["train"]
    resolved = yaml.safe_load(recorded.read_text())
    assert resolved["model"]["hidden"] == [16, 8] and resolved["data"]["seed"] == 1
    assert (by_flags / TRAIN_CONFIG_FILE).read_text() == recorded.read_text()
    assert load_run(by_flags).valid_auc == load_run(by_yaml).valid_auc
    capsys.readouterr()
    assert main(["segrec", "select", "--model", str(by_flags), str(by_yaml)]) == 0
    assert capsys.readouterr().out.strip() in (str(by_flags), str(by_yaml))
    runs_ = [str(by_flags), str(by_yaml)]
    assert main(["segrec", "evaluate", "--model", *runs_, "--data", str(fixture_log)]) == 0
