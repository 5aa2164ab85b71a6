"""Feature extraction throughput (frames/s) on this machine.

Generates short test videos, then measures:

1. decoding alone (one middle frame per 5-s segment, PyAV, incl. CLIP preprocessing);
2. end to end through `segint features extract` with a small random CLIP ViT (weights in a
   local file, exactly the CLI path);
3. the real-size ``clip-vit-large-patch14-336`` tower (random weights): encoder-only on a few
   frames, and end to end on one video (skip with ``--no-large``).

Run: ``.venv/bin/python bench/bench_features.py [--videos 8 --seconds 30 --size 640x360]``.
Frames/s counts segment frames (one per 5 s of video), not decoded frames.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from segint.features.encoder import ClipVisionEncoder, parse_encoder
from segint.features.extract import extract
from segint.features.video import clip_preprocess, decode_segment_frames

SMALL = {
    "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
    "num_attention_heads": 4, "image_size": 224, "patch_size": 32, "projection_dim": 128,
}  # fmt: skip


def make_videos(d: Path, n: int, seconds: float, width: int, height: int, fps: int = 30) -> None:
    """Moving-noise H.264/MPEG-4 videos (noise keeps the decoder honest)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height + 64, width + 64, 3), dtype=np.uint8)
    for i in range(n):
        with av.open(str(d / f"{i + 1}.mp4"), "w") as out:
            s = out.add_stream(codec, rate=fps)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            for f in range(int(seconds * fps)):
                dx = (f * 2) % 64
                img = np.ascontiguousarray(base[dx : dx + height, dx : dx + width])
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)


def bench_decode(videos: list[Path], size: int) -> dict[str, float]:
    t0, frames = time.perf_counter(), 0
    for v in videos:
        frames += len(clip_preprocess(decode_segment_frames(v).frames, size))
    dt = time.perf_counter() - t0
    return {"frames": frames, "seconds": dt, "frames_per_s": frames / dt}


def bench_small(video_dir: Path, tmp: Path, batch: int) -> dict[str, float]:
    (tmp / "small.json").write_text(json.dumps(SMALL))
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**SMALL))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "small.safetensors")
    r = extract(
        video_dir, tmp / "store_small", encoder=f"hf:{tmp / 'small.json'}",
        weights=tmp / "small.safetensors", batch=batch, progress=False,
    )  # fmt: skip
    return {"frames": r.frames, "seconds": r.seconds, "frames_per_s": r.frames_per_s}


def bench_large(video_dir: Path, tmp: Path, n_frames: int) -> dict[str, float]:
    name = "hf:clip-vit-large-patch14-336"
    torch.manual_seed(0)
    enc = ClipVisionEncoder(parse_encoder(name), "patch_mean").eval()
    x = torch.from_numpy(
        clip_preprocess([np.zeros((360, 640, 3), np.uint8)] * n_frames, 336)
    )  # (n, 3, 336, 336)
    enc(x[:1])  # warm-up
    t0 = time.perf_counter()
    y = enc(x)
    dt = time.perf_counter() - t0
    out = {"encoder_frames": n_frames, "encoder_seconds": dt, "encoder_frames_per_s": n_frames / dt}
    assert y.shape == (n_frames, 1024)
    one = tmp / "one_video"
    one.mkdir()
    (one / "1.mp4").symlink_to(sorted(video_dir.glob("*.mp4"))[0])
    r = extract(
        one, tmp / "store_large", encoder=name, weights="(random init)", batch=n_frames,
        progress=False, model=enc,
    )  # fmt: skip
    out |= {"e2e_frames": r.frames, "e2e_seconds": r.seconds, "e2e_frames_per_s": r.frames_per_s}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", default="640x360", help="WxH of the generated videos")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--large-frames", type=int, default=4)
    ap.add_argument("--no-large", action="store_true")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, PyAV {av.__version__}")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "videos").mkdir()
        make_videos(tmp / "videos", args.videos, args.seconds, w, h)
        videos = sorted((tmp / "videos").glob("*.mp4"))
        print(f"{len(videos)} videos of {args.seconds:.0f} s at {w}x{h}, 30 fps")
        results = {"decode_224": bench_decode(videos, 224)}
        results["small_vit_e2e"] = bench_small(tmp / "videos", tmp, args.batch)
        if not args.no_large:
            results["clip_vit_l14_336"] = bench_large(tmp / "videos", tmp, args.large_frames)
    for name, r in results.items():
        print(f"{name:>18}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
