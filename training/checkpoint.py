"""Run directories: what a training run writes and how a model is rebuilt from it.

``OUT/`` holds ``model.pt`` (the best state_dict), ``config.yaml`` (resolved training config
whose ``model`` section is the full `ModelConfig`), ``vocab_users.npy``, ``vocab_videos.npy``
and ``metrics.jsonl`` (one line per validation). The network is always rebuilt from the
config, never unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from segint.errors import SegintError
from segint.vocab import Vocab
from training.config import TrainConfig, config_from_run, save_config

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
USERS_FILE = "vocab_users.npy"
VIDEOS_FILE = "vocab_videos.npy"
METRICS_FILE = "metrics.jsonl"


def write_run_files(
    out: str | Path,
    cfg: TrainConfig,
    model_cfg: Any,
    users: Vocab,
    videos: Vocab,
    new_metrics: bool = True,
) -> None:
    """Config and vocabularies, written when a run starts (metrics.jsonl truncated unless
    ``new_metrics`` is False, as when a refit replaces the model of a finished run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, model_cfg, out / CONFIG_FILE)
    users.save(out / USERS_FILE)
    videos.save(out / VIDEOS_FILE)
    if new_metrics:
        (out / METRICS_FILE).write_text("")


def save_weights(model: torch.nn.Module, out: str | Path) -> None:
    """Write ``model.pt`` atomically, so a crash never leaves a half-written checkpoint."""
    target = Path(out) / MODEL_FILE
    tmp = target.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, target)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise SegintError(f"{run_dir}: not a training run (no {CONFIG_FILE})")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise SegintError(f"{path}: no model section")
    return raw


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The training config a run was made with."""
    return config_from_run(_read_config(Path(run_dir)))


def load_model(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Any, Any, Vocab, Vocab]:
    """Rebuild a trained model in eval mode.

    Returns:
        ``(model, model_cfg, users, videos)``: the `SegmentInterestModel` on ``device``, its
        `ModelConfig` and the user / video vocabularies it was trained with.
    """
    from model.config import ModelConfig
    from model.network import SegmentInterestModel

    run = Path(run_dir)
    raw = _read_config(run)
    for name in (MODEL_FILE, USERS_FILE, VIDEOS_FILE):
        if not (run / name).is_file():
            raise SegintError(f"{run}: not a complete training run (no {name})")
    try:
        model_cfg = ModelConfig.from_dict(raw["model"])
    except (TypeError, ValueError) as e:
        raise SegintError(f"{run / CONFIG_FILE}: bad model config ({e})") from None
    users, videos = Vocab.load(run / USERS_FILE), Vocab.load(run / VIDEOS_FILE)
    if (len(users), len(videos)) != (model_cfg.n_users, model_cfg.n_videos):
        raise SegintError(
            f"{run}: vocabularies ({len(users)} users, {len(videos)} videos) do not match the "
            f"config ({model_cfg.n_users}, {model_cfg.n_videos})"
        )
    model = SegmentInterestModel(model_cfg)
    state = torch.load(run / MODEL_FILE, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise SegintError(
            f"{run / MODEL_FILE}: does not fit the config ({str(e).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), model_cfg, users, videos
