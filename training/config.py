"""Training configuration: frozen dataclasses, loaded from YAML plus dotted overrides.

A config file has these sections (see ``configs/base.yaml``)::

    data:     history_len, split, seed, min_interactions, s_max
    optim:    lr, weight_decay, batch_size, eval_batch_size, max_epochs, grad_clip, eval_every,
              patience, valid_protocol, seed
    loss:     bpr_max | pairwise | bce | exit_ce
    model:    a `model.config.ModelSpec`: any `ModelConfig` field except the sizes taken from
              the data (n_users / n_videos and the side-table sizes from the vocabularies,
              s_max / history_len from ``data``, so they cannot disagree)
    features: store, l1_normalize (optional; the segment feature store of a content model)

Overrides are ``SECTION.KEY=VALUE`` strings (``loss=VALUE`` for the top-level key), given on
the command line as ``--set optim.lr=3e-4 model.d_model=32``. Values are read as YAML and
converted to the field's declared type, so ``3e-4``, ``true`` and ``[id,content]`` all work.
Unknown sections or keys, and values of the wrong type, raise `SegintError` (CLI exit 2).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model.config import SIZE_FIELDS, ModelConfig, ModelSpec
from segint.errors import SegintError
from segint.metrics import PROTOCOLS
from segint.splits import SPLIT_METHODS

LOSSES = ("bpr_max", "pairwise", "bce", "exit_ce")
# ModelConfig fields the training code fills in itself (not in ModelSpec).
DERIVED_MODEL_FIELDS = SIZE_FIELDS
# data.split of a run trained with `--train FILE`: validation = the file's last 10% by time.
TRAIN_FILE = "train_file"
# Config sections that are mappings (``loss`` is a top-level string).
SECTIONS = ("data", "optim", "model", "features")


@dataclass(frozen=True)
class DataConfig:
    history_len: int = 20  # H: previous views per row (model.history_tokens=false ignores them)
    split: str = "random_per_user"  # random_per_user | temporal; train_file = --train mode
    seed: int = 0  # split seed
    min_interactions: int = 1  # random_per_user: drop users with fewer rows
    s_max: int = 40  # S: slots; keeps videos shorter than s_max * 5 s

    def __post_init__(self) -> None:
        if self.history_len < 1:
            raise ValueError(f"data.history_len must be >= 1, got {self.history_len}")
        if self.split not in (*SPLIT_METHODS, TRAIN_FILE):
            raise ValueError(
                f"data.split must be one of {(*SPLIT_METHODS, TRAIN_FILE)}, got {self.split!r}"
            )
        if self.min_interactions < 1:
            raise ValueError(f"data.min_interactions must be >= 1, got {self.min_interactions}")
        if not 2 <= self.s_max <= 400:
            raise ValueError(f"data.s_max must be in [2, 400], got {self.s_max}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    batch_size: int = 256  # rows per step (per process under torchrun)
    eval_batch_size: int = 1024  # rows per inference batch
    max_epochs: int = 20  # passes over the training rows at most
    grad_clip: float = 10.0  # max global gradient norm (0 = no clipping)
    eval_every: int = 100  # validate every this many optimizer steps (and at the end)
    patience: int = 5  # stop after this many validations without a better NDCG@5
    valid_protocol: str = "strict"  # metric protocol of the validation NDCG@5
    seed: int = 0  # initialisation and shuffling seed
    # After early stopping, train a fresh model on training + validation rows for the best
    # step count and ship that one (validation rows are the newest data in a temporal split).
    refit: bool = False
    # After early stopping, refill the exit-count buffers of the chosen model (exit_prior > 0)
    # from training + validation rows, the rows the baselines are fitted on at test time; the
    # weights stay. `segint evaluate` scores the validation rows with training-row counts.
    refresh_counts: bool = False
    # Distillation weight (training.teacher): each training row's loss gains this times the
    # cross-entropy of the model's exit distribution under an out-of-fold hazard-gbdt's.
    # 0 = off. The served graph is the same either way.
    distill: float = 0.0
    # The KuaiRand side tables (where `segint baselines` finds them) enter the teacher's
    # features and the video table's (video_trees). `segint train` turns this off for logs of
    # another format, raw or prepared (other id spaces; `segint.data.log_format`).
    distill_side_tables: bool = True
    # Exponential moving average of the weights (training.ema): decay per step, warmed up as
    # min(ema, (1 + t) / (10 + t)). What is validated, early-stopped and saved are the
    # averaged weights; the optimiser steps the raw ones. 0 = off.
    ema: float = 0.0
    # Share w of the per-video exit table (training.video_trees, segint.video_table) in the
    # served exit distribution: p = (1 - w) p_network + w p_table for candidates whose video
    # has a row. The table is fitted after training (hazard-gbdt on the video's own features,
    # stopped on the validation rows, with the KuaiRand side table when distill_side_tables)
    # and written as RUN/video_trees.npz. 0 = no table.
    video_trees: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.video_trees <= 1.0:
            raise ValueError(f"optim.video_trees must be in [0, 1], got {self.video_trees}")
        if self.video_trees > 0 and self.refit:
            raise ValueError(
                "optim.video_trees stops the table's trees on the validation rows, which "
                "optim.refit trains on: set one of them off"
            )
        if not self.distill >= 0:
            raise ValueError(f"optim.distill must be >= 0, got {self.distill}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"optim.ema must be in [0, 1), got {self.ema}")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(
                f"need optim.lr > 0, weight_decay >= 0, grad_clip >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}"
            )
        for name in ("batch_size", "eval_batch_size", "max_epochs", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        if self.valid_protocol not in PROTOCOLS:
            raise ValueError(
                f"optim.valid_protocol must be one of {PROTOCOLS}, got {self.valid_protocol!r}"
            )


@dataclass(frozen=True)
class FeaturesConfig:
    """Where a content model's segment features come from (`segint.features.FeatureStore`).

    Recorded in a run's ``config.yaml`` so that `segint evaluate` and `segint plot` find the
    same store by default. Unused by models without the content modality.
    """

    store: str = ""  # feature store directory ("" = none; `segint train --features STORE`)
    l1_normalize: bool = False  # read vectors as x / (|x|_1 + 1e-6), as the reference (SegMM)
    # KuaiRand side tables (training/side.py) baked into the model as id-indexed features;
    # "" = none. Paths are read when training starts; the model keeps only the codes.
    video_table: str = ""  # video_features_basic_pure.csv(.gz)
    user_table: str = ""  # user_features_pure.csv(.gz)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: str = "bpr_max"  # training loss from model.loss
    model: ModelSpec = field(default_factory=ModelSpec)  # the architecture, sizes aside
    features: FeaturesConfig = field(default_factory=FeaturesConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def model_config(
        self,
        n_users: int,
        n_videos: int,
        video_side_sizes: tuple[int, ...] = (),
        user_side_sizes: tuple[int, ...] = (),
    ) -> ModelConfig:
        """The `ModelConfig` for vocabularies of ``n_users`` / ``n_videos`` rows (and the
        side-feature table sizes, `training.side.side_codes`)."""
        return ModelConfig.from_spec(
            self.model,
            n_users=n_users,
            n_videos=n_videos,
            s_max=self.data.s_max,
            history_len=self.data.history_len,
            video_side_sizes=video_side_sizes,
            user_side_sizes=user_side_sizes,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML (tuples become lists)."""
        return {
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
            "loss": self.loss,
            "model": self.model.to_dict(),
            "features": dataclasses.asdict(self.features),
        }


def _section_types(section: str) -> dict[str, Any]:
    cls = {"data": DataConfig, "optim": OptimConfig, "model": ModelSpec,
           "features": FeaturesConfig}[section]  # fmt: skip
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_value(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to ``typ`` (int, float, bool, str, tuple[str, ...])."""
    bad = SegintError(
        f"config key {key!r}: expected {getattr(typ, '__name__', typ)}, got {value!r}"
    )
    if typing.get_origin(typ) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise bad
        (item_type, *_) = typing.get_args(typ)
        return tuple(
            coerce_value(v.strip() if isinstance(v, str) else v, item_type, key) for v in items
        )
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad
        try:  # PyYAML reads `1e-3` (no dot) as a string
            number = float(value)
        except ValueError:
            raise bad from None
        if not math.isfinite(number):  # nan passes every `x < bound` check downstream
            raise SegintError(f"config key {key!r}: must be a finite number, got {value!r}")
        return number
    if typ is str:
        if isinstance(value, str):
            return value
        raise bad
    raise SegintError(f"config key {key!r}: unsupported field type {typ!r}")  # pragma: no cover


def from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Validate a plain dict (from YAML) into a `TrainConfig`; unknown keys are errors."""
    if not isinstance(raw, Mapping):
        raise SegintError(f"config must be a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {*SECTIONS, "loss"})
    if unknown:
        raise SegintError(
            f"unknown config key {unknown[0]!r} (sections: data, optim, loss, model, features)"
        )
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        values = raw.get(section) or {}
        if not isinstance(values, Mapping):
            raise SegintError(f"config section {section!r} must be a mapping, got {values!r}")
        types_ = _section_types(section)
        for key in values:
            if key not in types_:
                derived = (
                    " (set by training; use data.* instead)" if key in DERIVED_MODEL_FIELDS else ""
                )
                raise SegintError(f"unknown config key '{section}.{key}'{derived}")
        sections[section] = {
            k: coerce_value(v, types_[k], f"{section}.{k}") for k, v in values.items()
        }
    loss = raw.get("loss", TrainConfig.loss)
    try:
        cfg = TrainConfig(
            data=DataConfig(**sections["data"]),
            optim=OptimConfig(**sections["optim"]),
            loss=coerce_value(loss, str, "loss"),
            model=ModelSpec(**sections["model"]),
            features=FeaturesConfig(**sections["features"]),
        )
    except ValueError as e:
        raise SegintError(f"bad config: {e}") from None
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value parsed as YAML, or the raw text when it is not YAML);
    shared by every command configured by YAML + ``--set``."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SegintError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return key, value


def copy_sections(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw config whose section mappings can be edited without touching ``raw``."""
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``SECTION.KEY=VALUE`` overrides applied."""
    out = copy_sections(raw)
    for item in overrides:
        key, value = parse_override(item)
        path = key.split(".")
        if path == ["loss"]:
            out["loss"] = value
        elif len(path) == 2 and path[0] in SECTIONS:
            section = out.setdefault(path[0], {})
            if not isinstance(section, dict):
                raise SegintError(f"config section {path[0]!r} must be a mapping")
            section[path[1]] = value
        else:
            raise SegintError(
                f"unknown config key {key!r} (use SECTION.KEY with SECTION in data, optim, model, "
                "features, or loss)"
            )
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SegintError(f"{p}: no such config file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "parse error"
        raise SegintError(f"{p}: not valid YAML ({first})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SegintError(f"{p}: config must be a mapping of sections")
    return raw


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then the overrides."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, overrides))


def save_config(cfg: TrainConfig, model_cfg: ModelConfig, path: str | Path) -> None:
    """Write the resolved config: the training sections plus the full `ModelConfig`.

    The ``model`` section of the written file holds every ModelConfig field (vocabulary sizes
    included), so `training.checkpoint.load_model` rebuilds the network from it alone.
    """
    out = cfg.to_dict()
    out["model"] = model_cfg.to_dict()
    Path(path).write_text(yaml.safe_dump(out, sort_keys=False))


def config_from_run(raw: Mapping[str, Any]) -> TrainConfig:
    """The `TrainConfig` of a run directory's resolved ``config.yaml`` (derived fields dropped)."""
    raw = dict(raw)
    raw["model"] = {
        k: v for k, v in (raw.get("model") or {}).items() if k not in DERIVED_MODEL_FIELDS
    }
    return from_dict(raw)
