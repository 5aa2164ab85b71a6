"""Training config: YAML files, dotted overrides with type conversion, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segint.errors import SegintError
from tests.training.conftest import BASE, TINY
from training.config import TrainConfig, config_from_run, load_config, save_config


def test_shipped_configs_load() -> None:
    """configs/base.yaml and configs/tiny.yaml are valid and build a ModelConfig."""
    for path in (BASE, TINY):
        cfg = load_config(path)
        model_cfg = cfg.model_config(n_users=10, n_videos=20)
        assert (model_cfg.n_users, model_cfg.n_videos) == (10, 20)
        assert model_cfg.s_max == cfg.data.s_max and model_cfg.history_len == cfg.data.history_len


def test_overrides_are_converted_to_the_field_types() -> None:
    """`1e-3`-style floats, ints, bools, lists and the top-level loss all override."""
    cfg = load_config(
        TINY,
        [
            "optim.lr=3e-4",
            "model.d_model=32",
            "model.n_heads=4",
            "model.position_bias=false",
            "model.modalities=[id]",
            "data.history_len=3",
            "loss=pairwise",
        ],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.model.d_model == 32 and cfg.model.position_bias is False
    assert cfg.model.modalities == ("id",)
    assert cfg.data.history_len == 3 and cfg.loss == "pairwise"
    assert cfg.optim.batch_size == 13  # untouched keys keep the file's value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "optim.lrr"),
        ("model.dmodel=8", "model.dmodel"),
        ("training.lr=1", "training.lr"),
        ("model.n_users=5", "set by training"),
        ("lr", "KEY=VALUE"),
        ("optim.batch_size=abc", "optim.batch_size"),
        ("optim.batch_size=2.5", "optim.batch_size"),
        ("model.position_bias=maybe", "model.position_bias"),
        ("model.d_model=13", "divisible"),
        ("data.split=weekly", "data.split"),
        ("loss=mse", "loss"),
    ],
)
def test_bad_overrides_are_errors(override: str, message: str) -> None:
    """Unknown keys, wrong types and invalid values raise SegintError naming the problem."""
    with pytest.raises(SegintError, match=message):
        load_config(TINY, [override])


def test_unknown_key_in_yaml_file_is_an_error(tmp_path: Path) -> None:
    """A typo in a config file is an error, not silently ignored."""
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(SegintError, match="optim.learning_rate"):
        load_config(path)
    path.write_text("optim: [1, 2]\n")
    with pytest.raises(SegintError, match="mapping"):
        load_config(path)
    with pytest.raises(SegintError, match="no such config"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    """The written config.yaml holds the full ModelConfig and reloads to the same TrainConfig."""
    cfg = load_config(TINY, ["model.user_stream=cross"])
    model_cfg = cfg.model_config(n_users=7, n_videos=9)
    save_config(cfg, model_cfg, tmp_path / "config.yaml")
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["model"]["n_users"] == 7 and raw["model"]["user_stream"] == "cross"
    again = config_from_run(raw)
    assert again.to_dict()["data"] == cfg.to_dict()["data"]
    assert again.model_config(7, 9) == model_cfg
    assert isinstance(again, TrainConfig)
