"""NaN and infinity are refused in every numeric config key and command-line flag, with exit
code 2 and one line (``float`` accepts "nan" and "inf", and nan passes every bound check)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

import pytest

from model.config import ModelConfig
from segint.cli import build_parser, main
from segint.commands import finite_float
from segint.errors import SegintError
from tests.paths import KUAIRAND_FIXTURE
from training.config import DERIVED_MODEL_FIELDS, DataConfig, OptimConfig, load_config

BAD = ("nan", "inf", "-inf", ".nan", ".inf", "NaN")


def _parsers(parser: argparse.ArgumentParser) -> typing.Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_flag_parses_with_plain_float() -> None:
    """Every float-valued option of every sub-command goes through `finite_float`."""
    plain = [
        f"{p.prog} {'/'.join(a.option_strings)}"
        for p in _parsers(build_parser())
        for a in p._actions
        if a.type is float
    ]
    assert plain == []
    assert any(a.type is finite_float for p in _parsers(build_parser()) for a in p._actions)


SEGREC = ["segrec", "train", "--backbone", "widedeep", "--mode", "video", "--out", "o"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["baselines", "--data", "x", "--prior-strength", "nan"], "--prior-strength"),
        (["baselines", "--data", "x", "--prior-strength-n", "inf"], "--prior-strength-n"),
        (["baselines", "--data", "x", "--prior-grid", "1", "NaN"], "--prior-grid"),
        (["evaluate", "--model", "m", "--data", "x", "--prior-strength=-inf"], "--prior-strength"),
        (["evaluate", "--model", "m", "--data", "x", "--video-trees", "nan"], "--video-trees"),
        ([*SEGREC, "--lr", "nan"], "--lr"),
        ([*SEGREC, "--dropout", "inf"], "--dropout"),
        (["features", "synth", "--out", "o", "--content-weight", "nan"], "--content-weight"),
    ],
)
def test_flags_refuse_nan_and_inf(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused while parsing: exit 2, one line naming the flag."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a finite number" in err and flag in err


def test_bucket_edges_refuse_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["segrec", "train", "--backbone", "widedeep", "--mode", "video", "--out", str(tmp_path)]
    args += ["--data", str(KUAIRAND_FIXTURE), "--format", "kuairand", "--bucket-edges", "0,nan,60"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bucket-edges must be finite" in err


def _numeric_keys() -> list[str]:
    """section.key of every int or float field a config file may set."""
    keys = []
    for section, cls in (("data", DataConfig), ("optim", OptimConfig), ("model", ModelConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in DERIVED_MODEL_FIELDS:
                continue
            if hints[f.name] in (int, float) or typing.get_args(hints[f.name])[:1] == (float,):
                keys.append(f"{section}.{f.name}")
    return keys


def test_every_numeric_config_key_refuses_nan_and_inf() -> None:
    """Each int/float key of data, optim and model, set to each spelling of nan/inf."""
    keys = _numeric_keys()
    assert {"model.exit_prior", "optim.lr", "model.dropout", "data.seed"} <= set(keys)
    for key in keys:
        for bad in BAD:
            with pytest.raises(SegintError, match=key):
                load_config(None, [f"{key}={bad}"])


def test_train_refuses_exit_prior_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI and through a YAML file: exit 2, one line naming the key."""
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model:\n  exit_prior: .nan\n")
    base = [
        "train",
        "--data",
        str(KUAIRAND_FIXTURE),
        "--format",
        "kuairand",
        "--out",
        str(tmp_path),
    ]
    for extra in (["--set", "model.exit_prior=nan"], ["--config", str(yaml_file)]):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "'model.exit_prior': must be a finite number" in err
