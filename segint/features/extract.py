"""`segint features extract`: video files -> per-segment CLIP features in a feature store.

Pipeline: list the videos (a directory, searched recursively, or a list file), drop those
already in the store (resume), decode one frame per segment in a background thread (PyAV
releases the GIL while decoding, torch while encoding, so decode and encode overlap),
preprocess, batch frames across videos to ``batch`` images, encode, and append each finished
video to the store. A video that cannot be decoded is logged and counted, never fatal; the
store only ever receives whole videos, committed every few seconds and at the end.

A list file has one video per line: ``PATH`` or ``PATH<TAB>VIDEO_ID`` (relative paths are
relative to the list file; ``#`` starts a comment). Without an explicit id the file stem is
the id and must be an integer (video ids are int64 throughout segint).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segint.errors import SegintError
from segint.features.encoder import ClipVisionEncoder, load_encoder
from segint.features.video import (
    VIDEO_EXTENSIONS,
    VideoError,
    clip_preprocess,
    decode_segment_frames,
)
from segint.features.writer import FeatureWriter

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    """What one extraction run did."""

    extracted: int = 0  # videos written to the store
    frames: int = 0  # frames encoded (= segments written)
    skipped_existing: int = 0  # already in the store
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _video_id(path: Path) -> int | None:
    try:
        return int(path.stem)
    except ValueError:
        return None


def list_videos(source: str | Path) -> list[tuple[Path, int | None]]:
    """``(path, video_id or None)`` for a directory of videos or a list file, in a stable order."""
    src = Path(source)
    if src.is_dir():
        files = sorted(
            p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
        return [(p, _video_id(p)) for p in files]
    if not src.is_file():
        raise SegintError(f"--videos: no such directory or list file: {src}")
    out: list[tuple[Path, int | None]] = []
    for n, line in enumerate(src.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        path_s, _, id_s = line.partition("\t")
        p = Path(path_s.strip())
        p = p if p.is_absolute() else src.parent / p
        if id_s.strip():
            try:
                out.append((p, int(id_s.strip())))
            except ValueError:
                raise SegintError(
                    f"{src}:{n}: video id {id_s.strip()!r} is not an integer"
                ) from None
        else:
            out.append((p, _video_id(p)))
    return out


@dataclass
class _Pending:
    """A decoded video waiting for its frames to be encoded."""

    video_id: int
    pixels: np.ndarray  # (N, 3, R, R) float32
    features: list[torch.Tensor] = field(default_factory=list)  # encoded chunks
    next_frame: int = 0  # frames of `pixels` handed to the encoder so far


def _decode(path: Path, size: int) -> np.ndarray:
    return clip_preprocess(decode_segment_frames(path).frames, size)


def _prefetch(
    jobs: list[tuple[Path, int]], size: int, workers: int
) -> Iterator[tuple[Path, int, Future[np.ndarray]]]:
    """Decode ahead in ``workers`` threads, keeping at most ``2 * workers`` videos in flight."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        window: deque[tuple[Path, int, Future[np.ndarray]]] = deque()
        it = iter(jobs)
        for path, vid in it:
            window.append((path, vid, pool.submit(_decode, path, size)))
            if len(window) >= 2 * workers:
                break
        while window:
            yield window.popleft()
            nxt = next(it, None)
            if nxt is not None:
                window.append((nxt[0], nxt[1], pool.submit(_decode, nxt[0], size)))


def extract(
    videos: str | Path,
    out: str | Path,
    *,
    encoder: str,
    weights: str | Path,
    feature: str = "patch_mean",
    device: str = "cpu",
    batch: int = 32,
    workers: int = 1,
    progress: bool = True,
    model: ClipVisionEncoder | None = None,
) -> ExtractReport:
    """Extract features for every video under ``videos`` not yet in the store ``out``.

    Args:
        videos: directory (recursive) or list file.
        out: feature store directory (created when missing).
        encoder: ``hf:NAME`` or ``open_clip:NAME`` (see `segint.features.encoder`).
        weights: local weights file.
        feature: ``patch_mean`` (reference) or ``projected``.
        device: ``cpu`` or ``cuda[:N]``.
        batch: images per encoder call.
        workers: decoding threads.
        model: an already loaded encoder (benchmarks); ``encoder``/``weights`` still name it.
    """
    if batch < 1 or workers < 1:
        raise SegintError("--batch and --workers must be >= 1")
    listed = list_videos(videos)
    enc = model if model is not None else load_encoder(encoder, weights, feature, device)
    dev = next(enc.parameters()).device
    report = ExtractReport()
    t0 = time.perf_counter()
    with FeatureWriter(out, enc.dim, encoder=encoder, feature=feature) as writer:
        jobs: list[tuple[Path, int]] = []
        seen: set[int] = set()
        for path, vid in listed:
            if vid is None:
                report.failed[str(path)] = "file stem is not an integer video id (use a list file)"
            elif vid in seen:
                report.failed[str(path)] = f"duplicate video id {vid} in the input"
            elif writer.has_video(vid):
                report.skipped_existing += 1
            else:
                seen.add(vid)
                jobs.append((path, vid))
        for failed, reason in report.failed.items():
            log.warning("skipping %s: %s", failed, reason)
        log.info("%d videos to extract, %d already in %s", len(jobs), report.skipped_existing, out)
        bar = tqdm(total=len(jobs), unit="video", desc="extract", disable=not progress)
        queue: deque[_Pending] = deque()  # decoded videos, oldest first

        def encode(flush: bool) -> None:
            """Encode full batches (all remaining frames when ``flush``), write finished videos."""
            while queue:
                waiting = sum(len(p.pixels) - p.next_frame for p in queue)
                if waiting == 0 or (waiting < batch and not flush):
                    return
                chunks, owners, take = [], [], batch
                for p in queue:  # fill one batch from the oldest videos first
                    k = min(take, len(p.pixels) - p.next_frame)
                    if k:
                        chunks.append(p.pixels[p.next_frame : p.next_frame + k])
                        owners.append((p, k))
                        p.next_frame += k
                        take -= k
                    if take == 0:
                        break
                x = torch.from_numpy(np.concatenate(chunks)).to(dev)  # (b, 3, R, R)
                y = enc(x).float().cpu()  # (b, D)
                start = 0
                for p, k in owners:
                    p.features.append(y[start : start + k])
                    start += k
                while queue and queue[0].next_frame == len(queue[0].pixels):
                    done = queue.popleft()
                    writer.add(done.video_id, torch.cat(done.features).numpy())
                    report.extracted += 1
                    report.frames += len(done.pixels)
                    writer.maybe_commit()

        for path, vid, fut in _prefetch(jobs, enc.spec.image_size, workers):
            try:
                queue.append(_Pending(vid, fut.result()))
            except VideoError as e:
                report.failed[str(path)] = str(e)
                log.warning("skipping %s: %s", path, e)
            except Exception as e:  # e.g. a decoder or PIL error on a corrupt file: skip it
                report.failed[str(path)] = f"{type(e).__name__}: {e}"
                log.warning("skipping %s: %s: %s", path, type(e).__name__, e)
            bar.update(1)
            encode(flush=False)
        encode(flush=True)
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report
