"""Tiny model configs and random batches shared by the model tests (mismatched sizes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from export.onnx import example_inputs
from model import ModelConfig

# Mismatched sizes (B=13, S=7, H=5, d=32, 2 heads) so that a transposed axis cannot go unnoticed.
B, S, H, D, DC = 13, 7, 5, 32, 6
N_USERS, N_VIDEOS = 11, 17

Batch = dict[str, torch.Tensor]


def tiny_config(**overrides: Any) -> ModelConfig:
    base = ModelConfig(
        n_users=N_USERS,
        n_videos=N_VIDEOS,
        s_max=S,
        history_len=H,
        d_model=D,
        n_heads=2,
        n_layers=2,
        ffn_dim=48,
        dropout=0.1,
    )
    if "content" in overrides.get("modalities", ()):
        overrides.setdefault("content_dim", DC)
    return replace(base, **overrides)


def make_batch(cfg: ModelConfig, b: int = B, h: int = H, seed: int = 0) -> Batch:
    """Random valid inputs per docs/contracts.md (the exporter's, N in 1..S, exit slots 0..N,
    some padding), and row 0 a user without history."""
    batch = example_inputs(cfg, rows=b, history=h, seed=seed)
    batch["hist_mask"][0] = False
    return batch


USER_KEYS = ("user_ids", "hist_video_ids", "hist_exit_slots", "hist_n_segments", "hist_mask")


def user_part(batch: Batch) -> Batch:
    out = {k: batch[k] for k in USER_KEYS}
    if "hist_content" in batch:
        out["hist_content"] = batch["hist_content"]
    return out


def video_part(batch: Batch) -> Batch:
    out = {k: batch[k] for k in ("video_ids", "n_segments")}
    if "video_content" in batch:
        out["video_content"] = batch["video_content"]
    return out
