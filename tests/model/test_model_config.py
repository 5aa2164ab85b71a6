"""ModelConfig: validation names the bad values; YAML round trip; frozen."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from model import ModelConfig

BASE = {"n_users": 11, "n_videos": 17}


def test_defaults_are_valid():
    """The documented defaults build, and M counts the user token plus H history tokens."""
    cfg = ModelConfig(**BASE)
    assert (cfg.s_max, cfg.history_len, cfg.user_stream, cfg.modalities) == (
        40,
        20,
        "self",
        ("id",),
    )
    assert cfg.n_user_tokens == 21
    assert ModelConfig(**BASE, history_tokens=False).n_user_tokens == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 30, "n_heads": 4}, "d_model=30 is not divisible by n_heads=4"),
        ({"n_users": 0}, "n_users must be >= 1, got 0"),
        ({"s_max": 1}, "s_max must be >= 2"),
        ({"n_layers": -1}, "n_layers must be >= 0, got -1"),
        ({"n_layers": True}, "n_layers must be an integer, got True"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"modalities": ("id", "video")}, "modalities must be distinct values"),
        ({"modalities": ("id", "id")}, "modalities must be distinct values"),
        ({"modalities": ()}, "modalities must be a non-empty list"),
        ({"modalities": ("id", "content")}, "content_dim must be > 0 exactly when 'content'"),
        ({"content_dim": 8}, "content_dim must be > 0 exactly when 'content'"),
        ({"user_stream": "both"}, "user_stream must be one of"),
        ({"modalities": ("id", "content"), "content_dim": 4, "fusion_heads": 3}, "fusion_heads=3"),
        ({"position_bias": 1}, "position_bias must be true or false, got 1"),
        ({"n_layers": 0, "reference_last_layer_bug": True}, "reference_last_layer_bug needs"),
    ],
)
def test_bad_values_raise_value_error_naming_them(overrides, message):
    """Each invalid field raises ValueError whose message names the field and the value."""
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**BASE, **overrides})


def test_yaml_round_trip():
    """to_dict -> YAML -> from_dict gives back an equal config (lists become tuples)."""
    cfg = ModelConfig(**BASE, modalities=("id", "content"), content_dim=8, user_stream="cross")
    text = yaml.safe_dump(cfg.to_dict())
    assert "- content" in text
    assert ModelConfig.from_dict(yaml.safe_load(text)) == cfg


def test_unknown_keys_are_errors():
    """from_dict rejects keys that are not ModelConfig fields, naming them."""
    with pytest.raises(ValueError, match="unknown model config keys: d_modle"):
        ModelConfig.from_dict({**BASE, "d_modle": 32})


def test_frozen():
    """A config cannot be mutated after validation."""
    cfg = ModelConfig(**BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 8  # type: ignore[misc]
