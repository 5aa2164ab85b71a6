"""Synthetic view logs whose exits depend on segment content (spec section 5, issue 3 item 5).

No per-segment features exist for our real data, so the content modality is tested on data
generated here. The generative story:

* ``K`` latent topics. Segment ``j`` of video ``v`` has a topic vector ``z[v, j]`` that drifts
  along the video (AR(1) with correlation ``rho`` from a video-level start), so interest
  changes from segment to segment. Its stored feature is ``z @ A + noise`` for a fixed random
  ``A`` (K, D): the model sees the content only through these D-dimensional vectors.
* Each user has a taste vector ``t[u]`` and a patience offset; each video a quality offset.
* Watching segment by segment, the user's interest in segment ``j`` is
  ``w * t[u]·z[v, j] / sqrt(K) + quality[v] + patience[u] + noise``; the user leaves in the
  first segment whose interest falls below ``threshold``, or, with a small hazard, at random.

Video and user offsets are learnable from ids alone; the user x content term is not (most
videos have few views), but it is predictable from the content of each user's history. So a
model with the content modality should beat an ID-only model on this data; ``content_weight=0``
removes the content term (a control).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from segint.features.writer import FeatureWriter
from segint.segments import SEGMENT_MS

LOG_FILE = "log.parquet"
STORE_DIR = "features"
TRUTH_FILE = "truth.npz"
_CHUNK = 65536  # views simulated at once (bounds memory to ~CHUNK * S * K floats)


def generate(
    n_users: int = 500,
    n_videos: int = 5000,
    n_views: int = 100_000,
    dim: int = 64,
    seed: int = 0,
    out_dir: str | Path | None = None,
    *,
    n_topics: int = 8,
    max_segments: int = 12,
    rho: float = 0.7,
    content_weight: float = 1.5,
    threshold: float = -1.0,
    hazard: float = 0.03,
) -> tuple[pl.DataFrame, Path]:
    """Generate a log and its segment feature store.

    Args:
        n_users, n_videos, n_views: sizes (ids are ``1..n``).
        dim: feature width ``D``.
        seed: everything is a deterministic function of the arguments.
        out_dir: where ``log.parquet``, ``features/`` (the store) and ``truth.npz`` (latent
            tastes, topics, offsets) go; a new temporary directory when None.
        n_topics: latent topics ``K``.
        max_segments: videos have 1..max_segments segments.
        rho: correlation of consecutive segments' topics.
        content_weight: weight ``w`` of the user x content term (0 = exits ignore content).
        threshold: interest below which the user leaves.
        hazard: per-segment probability of leaving for no content reason.

    Returns:
        ``(log, store_path)``: the log has the canonical columns ``user_id, video_id, time_ms,
        duration_ms, play_time_ms`` (int64), sorted by ``(user_id, time_ms)``.
    """
    if min(n_users, n_videos, n_views, dim, n_topics, max_segments) < 1:
        raise ValueError("sizes must be >= 1")
    rng = np.random.default_rng(seed)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="segint-synth-"))
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_DIR
    if store.exists():
        raise FileExistsError(f"{store} exists; generate into an empty directory")
    k, s = n_topics, max_segments

    # Videos: segment counts, durations (ms) inside the last segment, topics, features.
    n_seg = rng.integers(1, s + 1, size=n_videos)  # (V,)
    duration = (n_seg - 1) * SEGMENT_MS + rng.integers(2, SEGMENT_MS + 1, size=n_videos)
    z = np.empty((n_videos, s, k))  # (V, S, K)
    z[:, 0] = rng.standard_normal((n_videos, k))
    for j in range(1, s):
        z[:, j] = rho * z[:, j - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((n_videos, k))
    mixing = rng.standard_normal((k, dim)) / np.sqrt(k)  # (K, D)
    feats = (z @ mixing + 0.1 * rng.standard_normal((n_videos, s, dim))).astype(np.float32)
    quality = 0.5 * rng.standard_normal(n_videos)

    # Users and views. Video popularity is long-tailed, so most videos have few views.
    taste = rng.standard_normal((n_users, k))  # (U, K)
    patience = 0.3 * rng.standard_normal(n_users)
    pop = 1.0 / (np.arange(n_videos) + 10.0) ** 0.8
    pop = pop[rng.permutation(n_videos)]
    users = rng.integers(0, n_users, size=n_views)
    videos = rng.choice(n_videos, size=n_views, p=pop / pop.sum())
    times = 1_650_000_000_000 + np.cumsum(rng.integers(1_000, 60_000, size=n_views))

    exits = np.empty(n_views, dtype=np.int64)
    for lo in range(0, n_views, _CHUNK):
        u, v = users[lo : lo + _CHUNK], videos[lo : lo + _CHUNK]
        content = np.einsum("bk,bsk->bs", taste[u], z[v]) / np.sqrt(k)  # (b, S)
        interest = content_weight * content + (quality[v] + patience[u])[:, None]
        interest = interest + 0.5 * rng.standard_normal(interest.shape)
        leave = (interest < threshold) | (rng.random(interest.shape) < hazard)
        leave &= np.arange(s)[None, :] < n_seg[v][:, None]  # only real segments
        exits[lo : lo + _CHUNK] = np.where(leave.any(axis=1), leave.argmax(axis=1), n_seg[v])

    # Play time consistent with segint.segments.exit_slot: inside the exit segment, strictly
    # before the end of the video; a complete view plays the whole video.
    dur = duration[videos]
    room = np.minimum(SEGMENT_MS, dur - exits * SEGMENT_MS - 1)  # >= 1 for exits < N
    offset = np.floor(rng.random(n_views) * np.maximum(room, 1)).astype(np.int64) + 1
    play = np.where(exits < n_seg[videos], exits * SEGMENT_MS + offset, dur)

    log = pl.DataFrame(
        {
            "user_id": users.astype(np.int64) + 1,
            "video_id": videos.astype(np.int64) + 1,
            "time_ms": times.astype(np.int64),
            "duration_ms": dur.astype(np.int64),
            "play_time_ms": play.astype(np.int64),
        }
    ).sort(["user_id", "time_ms"])
    log.write_parquet(out / LOG_FILE)

    seg_mask = np.arange(s)[None, :] < n_seg[:, None]  # (V, S)
    vid_grid = np.broadcast_to(np.arange(1, n_videos + 1)[:, None], (n_videos, s))
    seg_grid = np.broadcast_to(np.arange(s)[None, :], (n_videos, s))
    info = {"synthetic": {"seed": seed, "n_topics": k, "content_weight": content_weight}}
    with FeatureWriter(store, dim, encoder="synthetic", feature="topic_mix", info=info) as w:
        w.add_rows(vid_grid[seg_mask], seg_grid[seg_mask], feats[seg_mask])
    np.savez(
        out / TRUTH_FILE,
        taste=taste,
        quality=quality,
        patience=patience,
        mixing=mixing,
        topics=z,
        n_segments=n_seg,
    )
    (out / "synthetic.json").write_text(
        json.dumps(
            {
                "n_users": n_users,
                "n_videos": n_videos,
                "n_views": n_views,
                "dim": dim,
                "seed": seed,
                "n_topics": k,
                "max_segments": s,
                "rho": rho,
                "content_weight": content_weight,
                "threshold": threshold,
                "hazard": hazard,
            },
            indent=2,
        )
    )
    return log, store
