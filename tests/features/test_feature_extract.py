"""Extraction from generated videos with a tiny random CLIP vision encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from segint.cli import main
from segint.errors import SegintError
from segint.features import FeatureStore
from segint.features.encoder import load_encoder, parse_encoder, read_state_dict
from segint.features.extract import extract, list_videos
from segint.features.video import clip_preprocess, decode_segment_frames, segment_midpoints_s
from tests.features.conftest import TINY_CONFIG, grey_level, write_video


def _expected(encoder: str, weights: Path, video: Path, feature: str = "patch_mean") -> np.ndarray:
    """Features computed directly: decode, preprocess, encode, no store in between."""
    enc = load_encoder(encoder, weights, feature)
    frames = decode_segment_frames(video).frames
    x = torch.from_numpy(clip_preprocess(frames, TINY_CONFIG["image_size"]))
    return enc(x).numpy()


def test_segment_midpoints() -> None:
    """Segment j's frame time is the midpoint of [5j, min(5j+5, duration))."""
    assert segment_midpoints_s(12000) == [2.5, 7.5, 11.0]
    assert segment_midpoints_s(5000) == [2.5]
    assert segment_midpoints_s(5001) == [2.5, 5.0005]


def test_decode_picks_middle_frames(video_dir: Path) -> None:
    """One frame per segment, the one shown at the segment's midpoint (grey level encodes time)."""
    got = decode_segment_frames(video_dir / "101.mp4")
    assert got.duration_ms == 12000 and len(got.frames) == 3
    for frame, t in zip(got.frames, [2.5, 7.5, 11.0], strict=True):
        assert frame.shape == (48, 64, 3)
        assert abs(frame[16:, 16:].mean() - grey_level(t)) < 3


def test_seeking_picks_the_same_frames(tmp_path: Path) -> None:
    """Seeking to each segment's keyframe yields exactly the frames sequential decoding picks."""
    video = write_video(tmp_path / "1.mp4", 31.0)
    fast, slow = decode_segment_frames(video), decode_segment_frames(video, seek=False)
    assert len(fast.frames) == len(slow.frames) == 7
    for a, b, t in zip(fast.frames, slow.frames, segment_midpoints_s(31000), strict=True):
        np.testing.assert_array_equal(a, b)
        assert abs(a[16:, 16:].mean() - grey_level(t)) < 3


def test_clip_preprocess_shape_and_normalisation() -> None:
    """Shortest side resized, center-cropped, CLIP mean/std applied."""
    frame = np.full((48, 64, 3), 128, dtype=np.uint8)
    x = clip_preprocess([frame, frame], 28)
    assert x.shape == (2, 3, 28, 28) and x.dtype == np.float32
    want = (128 / 255 - 0.48145466) / 0.26862954
    assert np.allclose(x[0, 0], want, atol=1e-5)


@pytest.mark.parametrize(("shape", "size"), [((360, 640, 3), 336), ((61, 47, 3), 28)])
def test_clip_preprocess_matches_hf_processor(shape: tuple[int, int, int], size: int) -> None:
    """Our numpy/PIL preprocessing equals HF CLIPImageProcessor (the reference's) exactly."""
    from transformers import CLIPImageProcessor

    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    proc = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    want = proc(images=[img], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(clip_preprocess([img], size), want, atol=1e-5)


def test_extract_writes_every_segment(video_dir: Path, tiny_encoder, tmp_path: Path) -> None:
    """Each video gets ceil(duration/5 s) vectors equal to encoding its middle frames directly."""
    encoder, weights = tiny_encoder
    report = extract(video_dir, tmp_path / "st", encoder=encoder, weights=weights, batch=4)
    assert report.extracted == 3 and report.frames == 6 and not report.failed
    assert report.frames_per_s > 0
    store = FeatureStore.open(tmp_path / "st")
    assert store.dim == TINY_CONFIG["hidden_size"] and len(store) == 3 and store.n_rows == 6
    assert store.meta["encoder"] == encoder and store.meta["feature"] == "patch_mean"
    for vid, n in ((101, 3), (102, 2), (103, 1)):
        feats, mask = store.get(vid, n)
        assert mask.all()
        # batch=4 mixes frames of different videos in one encoder call: results must not depend on it.
        np.testing.assert_allclose(
            feats, _expected(encoder, weights, video_dir / f"{vid}.mp4"), rtol=1e-4, atol=1e-5
        )
    # Segments differ in content, so their vectors differ.
    feats, _ = store.get(101, 3)
    assert not np.allclose(feats[0], feats[2])


def test_projected_feature(video_dir: Path, tiny_encoder, tmp_path: Path) -> None:
    """--feature projected stores CLIP image embeddings of width projection_dim."""
    encoder, weights = tiny_encoder
    extract(video_dir, tmp_path / "st", encoder=encoder, weights=weights, feature="projected")
    store = FeatureStore.open(tmp_path / "st")
    assert store.dim == TINY_CONFIG["projection_dim"]
    feats, _ = store.get(102, 2)
    want = _expected(encoder, weights, video_dir / "102.mp4", "projected")
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)


def test_resume_and_incremental(video_dir: Path, tiny_encoder, tmp_path: Path) -> None:
    """A second run skips extracted videos; a new video is the only one encoded."""
    encoder, weights = tiny_encoder
    videos = tmp_path / "videos"
    shutil.copytree(video_dir, videos)
    extract(videos, tmp_path / "st", encoder=encoder, weights=weights, progress=False)
    before = FeatureStore.open(tmp_path / "st").get(101, 3)[0]
    again = extract(videos, tmp_path / "st", encoder=encoder, weights=weights, progress=False)
    assert again.extracted == 0 and again.skipped_existing == 3
    write_video(videos / "104.mp4", 5.5)
    more = extract(videos, tmp_path / "st", encoder=encoder, weights=weights, progress=False)
    assert more.extracted == 1 and more.frames == 2 and more.skipped_existing == 3
    store = FeatureStore.open(tmp_path / "st")
    assert len(store) == 4 and store.n_rows == 8
    np.testing.assert_array_equal(store.get(101, 3)[0], before)


def test_corrupt_files_are_skipped(video_dir: Path, tiny_encoder, tmp_path: Path) -> None:
    """Garbage, truncated and empty files are reported; the others land and the store reads."""
    encoder, weights = tiny_encoder
    videos = tmp_path / "videos"
    shutil.copytree(video_dir, videos)
    rng = np.random.default_rng(0)
    (videos / "201.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (videos / "202.mp4").write_bytes(b"")
    whole = (video_dir / "101.mp4").read_bytes()
    (videos / "203.mp4").write_bytes(whole[: len(whole) // 3])  # header promises 12 s
    (videos / "notanid.mp4").write_bytes(whole)
    report = extract(videos, tmp_path / "st", encoder=encoder, weights=weights, progress=False)
    failed = {Path(p).name for p in report.failed}
    assert failed == {"201.mp4", "202.mp4", "203.mp4", "notanid.mp4"}
    assert report.extracted == 3
    store = FeatureStore.open(tmp_path / "st")
    assert sorted(store.video_ids.tolist()) == [101, 102, 103]
    assert not store.has(203)


def test_list_file_with_explicit_ids(video_dir: Path, tmp_path: Path) -> None:
    """List lines are PATH or PATH<TAB>ID; relative paths resolve beside the list file."""
    lst = tmp_path / "videos.txt"
    lst.write_text(f"# comment\n{video_dir / '101.mp4'}\n{video_dir / '102.mp4'}\t7\n")
    assert list_videos(lst) == [(video_dir / "101.mp4", 101), (video_dir / "102.mp4", 7)]
    lst.write_text(f"{video_dir / '101.mp4'}\tabc\n")
    with pytest.raises(SegintError, match="not an integer"):
        list_videos(lst)


def test_open_clip_layout_gives_same_features(video_dir: Path, tiny_encoder, tmp_path) -> None:
    """The same weights in open_clip's layout (fused qkv, visual.proj) give the same vectors."""
    encoder, weights = tiny_encoder
    hf = read_state_dict(weights)
    oc: dict[str, torch.Tensor] = {
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": hf["visual_projection.weight"].t().contiguous(),
        "logit_scale": torch.tensor(1.0),  # text-side entries are ignored
    }
    for ln_oc, ln_hf in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            oc[f"visual.{ln_oc}.{p}"] = hf[f"vision_model.{ln_hf}.{p}"]
    for i in range(TINY_CONFIG["num_hidden_layers"]):
        h, o = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            oc[o + f"attn.in_proj_{p}"] = torch.cat(
                [hf[h + f"self_attn.{x}_proj.{p}"] for x in "qkv"]
            )
            for a, b in (
                ("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"),
            ):  # fmt: skip
                oc[o + f"{a}.{p}"] = hf[h + f"{b}.{p}"]
    torch.save(oc, tmp_path / "open_clip.pt")
    oc_cfg = tmp_path / "oc.json"
    oc_cfg.write_text(
        '{"embed_dim": 12, "quick_gelu": true, "vision_cfg": {"image_size": 28, "layers": 2,'
        ' "width": 32, "patch_size": 7, "head_width": 8, "mlp_ratio": 1.5}}'
    )
    assert parse_encoder(f"open_clip:{oc_cfg}").config == TINY_CONFIG
    for feature in ("patch_mean", "projected"):
        a = _expected(encoder, weights, video_dir / "101.mp4", feature)
        b = _expected(
            f"open_clip:{oc_cfg}", tmp_path / "open_clip.pt", video_dir / "101.mp4", feature
        )
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_presets_match_the_reference_architecture() -> None:
    """hf:clip-vit-large-patch14-336 and open_clip:ViT-L-14-336 are the same 1024-d tower."""
    hf = parse_encoder("hf:clip-vit-large-patch14-336").config
    oc = parse_encoder("open_clip:ViT-L-14-336").config
    assert hf == oc
    assert (hf["hidden_size"], hf["image_size"], hf["patch_size"]) == (1024, 336, 14)
    assert hf["hidden_act"] == "quick_gelu"
    assert parse_encoder("open_clip:ViT-B-32").config["hidden_act"] == "gelu"
    assert parse_encoder("open_clip:ViT-B-32-quickgelu").config["hidden_act"] == "quick_gelu"


def test_cli_errors_are_one_line(video_dir: Path, tiny_encoder, tmp_path: Path, capsys) -> None:
    """Missing weights, wrong weights and unknown encoders exit 2 with one line, no traceback."""
    encoder, weights = tiny_encoder
    base = ["features", "extract", "--videos", str(video_dir), "--out", str(tmp_path / "st")]
    other = tmp_path / "other.json"  # same family, another width: the weights do not fit
    other.write_text(json.dumps({**TINY_CONFIG, "hidden_size": 16}))
    cases = [
        (["--encoder", encoder, "--weights", str(tmp_path / "missing.safetensors")], "not found"),
        (["--encoder", f"hf:{other}", "--weights", str(weights)], "do not fit"),
        (["--encoder", "timm:vit", "--weights", str(weights)], "--encoder must be"),
        (["--encoder", encoder, "--weights", str(weights), "--device", "cuda:7"], "cuda"),
    ]
    for extra, message in cases:
        if message == "cuda" and torch.cuda.device_count() > 7:
            continue
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "st").exists()


def test_cli_extract_reports_throughput(video_dir: Path, tiny_encoder, tmp_path, capsys) -> None:
    """`segint features extract` prints frames/s and the failures."""
    encoder, weights = tiny_encoder
    argv = ["features", "extract", "--videos", str(video_dir), "--out", str(tmp_path / "st")]
    argv += ["--encoder", encoder, "--weights", str(weights), "--no-progress", "--batch", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "extracted 3 videos (6 frames)" in out and "frames/s" in out
