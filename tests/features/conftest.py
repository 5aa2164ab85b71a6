"""Fixtures for the feature tests: generated videos and a tiny random CLIP vision encoder.

Videos are written with PyAV (MPEG-4 Part 2, built into every FFmpeg): 64x48 at 10 fps, each
frame a solid grey whose level encodes its timestamp (``level(t) = 10 + 10 * t mod 230`` for t
in seconds), so a test can tell which frame was picked for a segment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FPS = 10


def grey_level(t: float) -> float:
    """Grey level of the frame shown at ``t`` seconds (wraps every 23 s)."""
    return 10.0 + (10.0 * t) % 230.0


def write_video(path: Path, seconds: float, fps: int = FPS) -> Path:
    """Write a ``seconds``-long test video (see module docstring) to ``path``."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.bit_rate = 4_000_000  # near-lossless, so grey levels survive
        for i in range(round(seconds * fps)):
            img = np.full((48, 64, 3), grey_level(i / fps), dtype=np.uint8)
            img[:8, :8] = (255, 0, 0)  # a corner patch makes frames non-uniform
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three videos: id 101 (12 s, 3 segments), 102 (7 s, 2), 103 (3 s, 1)."""
    d = tmp_path_factory.mktemp("videos")
    for vid, seconds in ((101, 12.0), (102, 7.0), (103, 3.0)):
        write_video(d / f"{vid}.mp4", seconds)
    return d


TINY_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 28,
    "patch_size": 7,
    "projection_dim": 12,
    "hidden_act": "quick_gelu",
}


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``(encoder name, weights file)`` of a random CLIP ViT of the real architecture family.

    Same code path as clip-vit-large-patch14-336 (HF CLIPVisionModelWithProjection), with a
    config of mismatched small sizes; its weights are saved to a local safetensors file.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    d = tmp_path_factory.mktemp("encoder")
    (d / "config.json").write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CONFIG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "tiny.safetensors")
    return f"hf:{d / 'config.json'}", d / "tiny.safetensors"
