"""Tiny models, training runs and exported artifacts for the export and service tests.

Sizes are small and deliberately mismatched (S=7, H=5, d=12, 3 heads, 2 layers) and every
parameter is drawn at random (the zero-initialised offsets too), as are the exit counts, so a
wrong slot, mask or user shows up as a different logit. Exporting takes ~10-20 s on two cores, so artifacts are
cached in pytest's cache folder under a hash of the code that produces them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig
from model.network import SegmentInterestModel
from segint.vocab import Vocab

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "s_max": 7,
    "history_len": 5,
    "d_model": 12,
    "n_heads": 3,
    "n_layers": 2,
    "ffn_dim": 20,
    "dropout": 0.0,
    "exit_prior": 1.0,  # as the default config: exit counts are part of the exported graph
    "exit_prior_base": "n_segments",  # the per-N exit counts too
    "history_stats": True,
    "user_tilt": 0.7,  # the user's residual rides in one extra (masked) user-state token
    "video_side_sizes": (3, 5),  # side-feature codes are id-indexed buffers of the graph
    "user_side_sizes": (4,),
}
USERS = Vocab(np.arange(100, 112))  # raw user ids 100..111 -> 1..12; anything else unknown
VIDEOS = Vocab(np.arange(1000, 1028))  # raw video ids 1000..1027 -> 1..28


CONTENT_DIM = 6  # Dc of the content models (tests/export/tiny_content.py)


def tiny_model(
    user_stream: str = "self", seed: int = 0, modalities: tuple[str, ...] = ("id",)
) -> SegmentInterestModel:
    cfg = ModelConfig(
        n_users=len(USERS),
        n_videos=len(VIDEOS),
        user_stream=user_stream,
        modalities=modalities,
        content_dim=CONTENT_DIM if "content" in modalities else 0,
        **{  # type: ignore[arg-type]
            k: v
            for k, v in TINY.items()
            if "id" in modalities or k not in ("video_side_sizes", "user_side_sizes")
        },
    )
    torch.manual_seed(seed)
    model = SegmentInterestModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)
        # Random exit counts: the prior differs per video and slot.
        model.decoder.set_exit_counts(
            torch.randint(0, 4, (len(VIDEOS), cfg.s_max)).float(),
            torch.randint(0, 9, (cfg.s_max + 1, cfg.s_max)).float(),
        )
        if cfg.video_side_sizes:
            sizes_v = torch.tensor(cfg.video_side_sizes)
            sizes_u = torch.tensor(cfg.user_side_sizes)
            model.set_side_features(
                (torch.rand(len(VIDEOS), len(sizes_v)) * sizes_v).long(),
                (torch.rand(len(USERS), len(sizes_u)) * sizes_u).long(),
            )
    return model.eval()


def write_run(run_dir: Path, model: SegmentInterestModel) -> Path:
    """A training run directory as `training.checkpoint` writes it."""
    from training.checkpoint import save_weights, write_run_files
    from training.config import DataConfig, TrainConfig

    cfg = model.cfg
    train_cfg = TrainConfig(data=DataConfig(history_len=cfg.history_len, s_max=cfg.s_max))
    write_run_files(run_dir, train_cfg, cfg, USERS, VIDEOS)
    save_weights(model, run_dir)
    return run_dir


def cached_artifact(cache_dir: Path, user_stream: str) -> Path:
    """The exported artifact of ``tiny_model(user_stream)``, built once per code version."""
    from export.onnx import export_run

    h = hashlib.sha256(repr((TINY, user_stream)).encode())
    code = [*sorted((ROOT / "model").glob("*.py")), *sorted((ROOT / "export").glob("*.py"))]
    for f in [*code, ROOT / "training" / "checkpoint.py"]:  # what writes and reads the run
        h.update(f.read_bytes())
    out = cache_dir / f"{user_stream}-{h.hexdigest()[:16]}"
    if not (out / "manifest.json").exists():
        run = write_run(cache_dir / f"run-{user_stream}", tiny_model(user_stream))
        export_run(run, out, version=f"tiny-{user_stream}", force=True)
    return out
