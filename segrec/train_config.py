"""`segint segrec train` configuration: frozen dataclasses, loaded from YAML plus overrides.

The same scheme as `training.config` (``segint train``). A config file has four sections
(see ``configs/segrec.yaml``, which holds every default)::

    data:     split, seed, min_interactions, s_max, bucket_edges
    model:    backbone, mode, history_len, emb_dim, hidden, activation, dropout,
              learn_temperature, effective_feature, dense_linear, dense_both,
              standardize_dense
    optim:    lr, batch_size, max_epochs, patience, calibrate, ema, emb_weight_decay,
              eval_every, zero_init_dense
    crossfit: k, epochs

Overrides are ``SECTION.KEY=VALUE`` strings (``--set optim.lr=3e-4 model.hidden=[64,32]``),
read as YAML and converted to the field's declared type. Unknown sections or keys, values of
the wrong type and NaN / inf raise `SegintError` (CLI exit 2). The older flags (``--lr``,
``--emb-dim``, ...) are shorthands for these keys and win over ``--set``.

Paths (``--interest-model``, ``--cross-fit-dir``, ``--out``, the data files) and the filter
options stay flags: they name files on this machine, not settings of the method. A run records
the resolved config as ``train_config.yaml``; its model and training options also live in
``segrec.json``, which `segint segrec evaluate/select` and the export read.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segint.errors import SegintError
from segint.splits import SPLIT_METHODS
from segrec.config import ACTIVATIONS, BACKBONES, MODES
from training.config import coerce_value, copy_sections, parse_override, read_yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "segrec.yaml"
SECTIONS = ("data", "model", "optim", "crossfit")


@dataclass(frozen=True)
class DataSettings:
    split: str = "random_per_user"  # with --data: random_per_user | temporal
    seed: int = 0  # split seed, also the initialisation seed
    min_interactions: int = 1  # random_per_user: drop users with fewer rows (not with --train)
    s_max: int = 40  # S: slots; keeps videos shorter than s_max * 5 s
    bucket_edges: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 200.0)  # s

    def __post_init__(self) -> None:
        if self.split not in SPLIT_METHODS:
            raise ValueError(f"data.split must be one of {SPLIT_METHODS}, got {self.split!r}")
        if self.min_interactions < 1:
            raise ValueError(f"data.min_interactions must be >= 1, got {self.min_interactions}")


@dataclass(frozen=True)
class ModelSettings:
    backbone: str = ""  # widedeep | din; "" = not chosen (train refuses it)
    mode: str = ""  # one of segrec.config.MODES; "" = not chosen (train refuses it)
    history_len: int = 20  # DIN: previous views attended over
    emb_dim: int = 32  # width of every field embedding
    hidden: tuple[int, ...] = (64,)  # deep MLP widths
    activation: str = "dice"  # DIN MLPs: dice | prelu
    dropout: float = 0.0  # dropout in the deep MLPs
    learn_temperature: bool = False  # segrec/itemposition: softmax(t p), t learned
    effective_feature: bool = False  # mode features: add P(play > the label's threshold)
    dense_linear: bool = False  # DIN, mode features: interest features as a linear logit term
    dense_both: bool = False  # DIN, mode features: the linear term and the MLP input
    standardize_dense: bool = False  # mode features: (f - mean) / std of the training rows

    def __post_init__(self) -> None:
        if self.backbone not in ("", *BACKBONES):
            raise ValueError(f"model.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.mode not in ("", *MODES):
            raise ValueError(f"model.mode must be one of {MODES}, got {self.mode!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"model.activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 512  # rows per step
    max_epochs: int = 20  # passes over the training rows at most
    patience: int = 3  # epochs without a better validation AUC before stopping
    calibrate: bool = False  # Platt-scale the output logit on the validation rows afterwards
    ema: float = 0.0  # decay of an exponential moving average of the weights per step; 0 = off
    emb_weight_decay: float = 0.0  # L2 (Adam weight_decay) on the id embeddings only
    eval_every: int = 0  # validate every this many steps (patience counts validations); 0 = epochs
    zero_init_dense: bool = False  # the interest features' linear term starts at 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"optim.ema must be in [0, 1), got {self.ema}")
        if self.emb_weight_decay < 0:
            raise ValueError(f"optim.emb_weight_decay must be >= 0, got {self.emb_weight_decay}")
        if self.eval_every < 0:
            raise ValueError(f"optim.eval_every must be >= 0, got {self.eval_every}")


@dataclass(frozen=True)
class CrossfitSettings:
    k: int = 5  # fold models for the training rows' interest inputs (0 = in-sample)
    epochs: int = 0  # max epochs of each fold model (0 = the interest run's optim.max_epochs)

    def __post_init__(self) -> None:
        if self.k < 0 or self.k == 1:
            raise ValueError(f"crossfit.k must be 0 (off) or >= 2 folds, got {self.k}")
        if self.epochs < 0:
            raise ValueError(
                f"crossfit.epochs must be >= 0 (0 = the interest run's), got {self.epochs}"
            )


@dataclass(frozen=True)
class SegRecTrainConfig:
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    crossfit: CrossfitSettings = field(default_factory=CrossfitSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML (tuples become lists)."""
        out = dataclasses.asdict(self)
        for section in out.values():
            for key, value in section.items():
                if isinstance(value, tuple):
                    section[key] = list(value)
        return out


_CLASSES = {
    "data": DataSettings,
    "model": ModelSettings,
    "optim": OptimSettings,
    "crossfit": CrossfitSettings,
}


def _types(section: str) -> dict[str, Any]:
    cls = _CLASSES[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _value(value: Any, typ: Any, key: str) -> Any:
    """`training.config.coerce_value`, plus one number for a list (``model.hidden=64``)."""
    one = isinstance(value, int | float) and not isinstance(value, bool)
    if typing.get_origin(typ) is tuple and one:
        value = [value]
    return coerce_value(value, typ, key)


def from_dict(raw: Mapping[str, Any]) -> SegRecTrainConfig:
    """Validate a plain dict (from YAML) into a `SegRecTrainConfig`; unknown keys are errors."""
    if not isinstance(raw, Mapping):
        raise SegintError(f"config must be a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise SegintError(f"unknown config key {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        values = raw.get(section) or {}
        if not isinstance(values, Mapping):
            raise SegintError(f"config section {section!r} must be a mapping, got {values!r}")
        types_ = _types(section)
        for key in values:
            if key not in types_:
                raise SegintError(f"unknown config key '{section}.{key}'")
        sections[section] = {k: _value(v, types_[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return SegRecTrainConfig(**{s: _CLASSES[s](**sections[s]) for s in SECTIONS})
    except ValueError as e:
        raise SegintError(f"bad config: {e}") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``SECTION.KEY=VALUE`` overrides applied."""
    out = copy_sections(raw)
    for item in overrides:
        key, value = parse_override(item)
        path = key.split(".")
        if len(path) != 2 or path[0] not in SECTIONS:
            raise SegintError(
                f"unknown config key {key!r} (use SECTION.KEY with SECTION in "
                f"{', '.join(SECTIONS)})"
            )
        section = out.setdefault(path[0], {})
        if not isinstance(section, dict):
            raise SegintError(f"config section {path[0]!r} must be a mapping")
        section[path[1]] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SegRecTrainConfig:
    """Defaults, then the YAML file (if any), then the overrides."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, overrides))


def save_config(cfg: SegRecTrainConfig, path: str | Path) -> None:
    """Write the resolved config; ``--config`` reads it back unchanged."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
