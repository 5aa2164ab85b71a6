"""Video decoding (PyAV) and CLIP image preprocessing (numpy + PIL, no torchvision).

One frame per 5-second segment: segment ``j`` covers ``[5j, min(5j + 5, duration))`` seconds,
and its frame is the first decoded frame at or after the segment's midpoint (the "middle
frame"); when the stream ends first, the last frame inside the segment is used. A segment
with no frame at all means the file is truncated, and the video is rejected as a whole: a
partial feature sequence would silently misalign segments (the reference likewise skips a
video whose frame count differs from its segment count).

Decoding seeks to the keyframe before each midpoint and decodes forward to it, so about one
GOP per segment is decoded instead of the whole video; frames are converted to RGB only when
picked. Files that cannot seek are decoded sequentially (same frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from segint.segments import SEGMENT_MS, n_segments

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".mpg", ".mpeg", ".3gp"}
)
# CLIP's image normalisation (OpenAI's training statistics), shared by every CLIP ViT.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

# Seek instead of decoding forward when the next midpoint is this far (s) past the last frame.
SEEK_AHEAD_S = 2.0

U8Image = npt.NDArray[np.uint8]


class VideoError(Exception):
    """A video that cannot be decoded into one frame per segment (reported and skipped)."""


@dataclass(frozen=True)
class SegmentFrames:
    """The picked frames of one video: ``frames[j]`` is segment ``j``'s (H, W, 3) RGB frame."""

    duration_ms: int
    frames: list[U8Image]


def segment_midpoints_s(duration_ms: int) -> list[float]:
    """Midpoint (seconds) of each 5-second segment of a video of ``duration_ms``."""
    n = int(n_segments(duration_ms))
    return [(j * SEGMENT_MS + min((j + 1) * SEGMENT_MS, duration_ms)) / 2000.0 for j in range(n)]


def _duration_s(container: Any, stream: Any) -> float | None:
    """Duration from the stream header, else the container's; None when neither is known."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _measured_duration_s(path: Path) -> float:
    """Duration measured by decoding every frame (for files whose header has none)."""
    import av

    end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            if frame.time is not None:
                end = max(end, frame.time + 1.0 / rate)
    return end


def _pick_frames(container: Any, stream: Any, targets: list[float], seek: bool) -> list[U8Image]:
    """The frame for each midpoint in ``targets`` (seconds from the stream start).

    With ``seek``, a midpoint more than `SEEK_AHEAD_S` past the last decoded frame is reached
    by seeking to the keyframe before it, so only about one GOP per segment is decoded;
    both modes pick the same frame (the first at or after the midpoint).
    """
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    frames: list[U8Image] = []
    frame_iter = container.decode(stream)
    last: tuple[float, Any] | None = None  # last decoded (time, frame)
    for j, target in enumerate(targets):
        if last is not None and last[0] >= target:  # already decoded past this midpoint
            frames.append(last[1].to_ndarray(format="rgb24"))
            continue
        if seek and target - (last[0] if last else 0.0) > SEEK_AHEAD_S:
            ts = int((target + start) / stream.time_base)
            container.seek(ts, stream=stream, backward=True, any_frame=False)
            frame_iter = container.decode(stream)
        picked = None
        for frame in frame_iter:
            if frame.time is None:
                continue
            last = (float(frame.time) - start, frame)
            if last[0] >= target:
                picked = frame
                break
        if picked is None:
            # The stream ended before the midpoint: the last frame serves if it lies inside
            # this segment; a segment with no frame at all means a truncated file.
            if last is None or last[0] < j * SEGMENT_MS / 1000.0:
                break
            picked = last[1]
        frames.append(picked.to_ndarray(format="rgb24"))
    return frames


def decode_segment_frames(path: str | Path, seek: bool = True) -> SegmentFrames:
    """Decode one frame per 5-second segment of the first video stream of ``path``.

    Args:
        path: the video file.
        seek: seek to each segment's keyframe instead of decoding every frame (faster on long
            videos); a file that fails to seek is decoded sequentially instead.

    Raises:
        VideoError: unreadable file, no video stream, zero duration or truncated stream.
    """
    import av

    p = Path(path)
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _duration_s(container, stream)
            if duration is None:
                duration = _measured_duration_s(p)
            duration_ms = int(math.floor(duration * 1000 + 0.5))
            if duration_ms <= 0:
                raise VideoError("zero duration")
            targets = segment_midpoints_s(duration_ms)
            frames = _pick_frames(container, stream, targets, seek)
        if seek and len(frames) < len(targets):  # maybe a bad index: confirm sequentially
            return decode_segment_frames(p, seek=False)
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        if seek:
            return decode_segment_frames(p, seek=False)
        raise VideoError(f"{type(e).__name__}: {e}") from None
    if len(frames) < len(targets):
        raise VideoError(f"truncated: decoded frames for {len(frames)} of {len(targets)} segments")
    return SegmentFrames(duration_ms=duration_ms, frames=frames)


def clip_preprocess(frames: list[U8Image], size: int) -> npt.NDArray[np.float32]:
    """CLIP preprocessing: shortest side to ``size`` (bicubic), center crop, scale, normalise.

    Args:
        frames: RGB uint8 frames (H, W, 3), any sizes.
        size: the encoder's input resolution (336 for clip-vit-large-patch14-336).

    Returns:
        (n, 3, size, size) float32 pixel values.
    """
    out = np.empty((len(frames), 3, size, size), dtype=np.float32)
    for i, frame in enumerate(frames):
        img = Image.fromarray(frame)
        w, h = img.size
        scale = size / min(w, h)
        rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((rw, rh), Image.Resampling.BICUBIC)
        left, top = (rw - size) // 2, (rh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        x = np.asarray(img, dtype=np.float32) / 255.0  # (size, size, 3)
        out[i] = ((x - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
    return out
