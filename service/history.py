"""A user's view history and the cached user state, with its binary blob format (pure numpy).

The cache holds ONE blob per user: the user side of the model, already computed (with the
``self`` user stream, the per-layer user states the scorer attends to), plus the history it
was computed from, so a view event can append to that history and recompute the states.

Blob layout (little-endian)::

    header  magic "SGU1" | format u16 | flags u16 | artifact fingerprint 8 B |
            n_mod u16 | n_layers u16 | tokens M u32 | width d u32 | views h u32 | crc32 u32
    payload states float32 (n_mod, L, M, d) | user mask uint8 (M,) |
            video_ids int64 (h,) | time_ms int64 (h,) | exit_slots int32 (h,) | n_segments int32 (h,)

The fingerprint ties a blob to the exported graphs that produced it (a blob from another export
under the same version is "stale"); the CRC32 over the payload catches torn or foreign values
("corrupt"). Either way the reader treats the blob as a miss and counts it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segint.segments import exit_slot, n_segments
from segint.vocab import Vocab

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

MAGIC = b"SGU1"
BLOB_FORMAT = 1
NO_TIME = -1  # a view whose time the caller did not give: older than any timed view
_HEADER = struct.Struct("<4sHH8sHHIIII")


class BlobError(ValueError):
    """A blob that cannot be used; ``reason`` is "stale" or "corrupt" (a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class History:
    """A user's most recent views, most recent first, at most the model's history length."""

    video_ids: IntArray  # (h,) raw video ids
    time_ms: IntArray  # (h,) when the view happened (NO_TIME when unknown)
    exit_slots: IntArray  # (h,) where the view ended, 0..N
    n_segments: IntArray  # (h,) segments of the viewed video, 1..S

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def empty(cls) -> History:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z)

    @classmethod
    def from_views(
        cls,
        video_ids: npt.ArrayLike,
        duration_ms: npt.ArrayLike,
        play_time_ms: npt.ArrayLike,
        time_ms: npt.ArrayLike,
        cap: int,
    ) -> History:
        """Views given most recent first; timed views are re-sorted newest first (stable),
        repeated (video, time) pairs are kept once and only the first ``cap`` views remain."""
        vid = np.asarray(video_ids, dtype=np.int64)
        dur = np.asarray(duration_ms, dtype=np.int64)
        t = np.asarray(time_ms, dtype=np.int64)
        order = np.argsort(-t, kind="stable")  # NO_TIME (-1) sorts after every real time
        _, first = np.unique(np.stack([vid[order], t[order]]), axis=1, return_index=True)
        keep = order[np.sort(first)][:cap]
        return cls(
            video_ids=vid[keep],
            time_ms=t[keep],
            exit_slots=exit_slot(np.asarray(play_time_ms, dtype=np.int64)[keep], dur[keep]),
            n_segments=np.maximum(n_segments(dur[keep]), 1),
        )

    def with_view(
        self, video_id: int, duration_ms: int, play_time_ms: int, time_ms: int, cap: int
    ) -> History | None:
        """This history plus one view, or None when the view changes nothing: the same
        (video, time) is already there, or the history is full and the view is older than
        all of it. That makes replaying an event harmless (idempotent)."""
        if np.any((self.video_ids == video_id) & (self.time_ms == time_ms)):
            return None
        at = int(np.searchsorted(-self.time_ms, -time_ms, side="right"))  # newest first
        if at >= cap:
            return None

        def put(a: IntArray, value: int) -> IntArray:
            return np.insert(a, at, value)[:cap]

        return History(
            video_ids=put(self.video_ids, video_id),
            time_ms=put(self.time_ms, time_ms),
            exit_slots=put(self.exit_slots, int(exit_slot(play_time_ms, duration_ms))),
            n_segments=put(self.n_segments, max(int(n_segments(duration_ms)), 1)),
        )


@dataclass(frozen=True)
class UserState:
    """The cached user side: the history and, for the ``self`` stream, its encoder states."""

    history: History
    states: FloatArray | None  # (n_mod, L, M, d) float32; None for the cross stream
    mask: BoolArray | None  # (M,) True = real user token


def encode_blob(state: UserState, fingerprint: bytes) -> bytes:
    """Serialize ``state`` for the cache; ``fingerprint`` is the artifact's 8-byte id."""
    if state.states is None or state.mask is None:
        states = np.zeros((0, 0, 0, 0), dtype="<f4")
        mask = np.zeros(0, dtype=np.uint8)
    else:
        states = np.ascontiguousarray(state.states, dtype="<f4")
        mask = state.mask.astype(np.uint8)
    n_mod, n_layers, m, d = states.shape
    h = state.history
    payload = b"".join(
        (
            states.tobytes(),
            mask.tobytes(),
            h.video_ids.astype("<i8").tobytes(),
            h.time_ms.astype("<i8").tobytes(),
            h.exit_slots.astype("<i4").tobytes(),
            h.n_segments.astype("<i4").tobytes(),
        )
    )
    header = _HEADER.pack(
        MAGIC, BLOB_FORMAT, 0, fingerprint, n_mod, n_layers, m, d, len(h), zlib.crc32(payload)
    )
    return header + payload


def decode_blob(blob: bytes, fingerprint: bytes | None) -> UserState:
    """Parse a blob written by `encode_blob` for the artifact ``fingerprint`` (None: any
    artifact, for reading the history out of a stale blob).

    Raises:
        BlobError: ``reason="stale"`` for another artifact's blob, ``"corrupt"`` otherwise.
    """
    if len(blob) < _HEADER.size:
        raise BlobError("corrupt", f"blob of {len(blob)} bytes is shorter than its header")
    magic, fmt, _flags, fp, n_mod, n_layers, m, d, h, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC or fmt != BLOB_FORMAT:
        raise BlobError("corrupt", f"unknown blob magic/format {magic!r}/{fmt}")
    if fingerprint is not None and fp != fingerprint:
        raise BlobError("stale", "blob was written by another export of the model")
    n_states = n_mod * n_layers * m * d
    expected = _HEADER.size + 4 * n_states + m + 8 * h * 2 + 4 * h * 2
    if len(blob) != expected:
        raise BlobError("corrupt", f"blob has {len(blob)} bytes, its header says {expected}")
    view = memoryview(blob)[_HEADER.size :]
    if zlib.crc32(view) != crc:
        raise BlobError("corrupt", "blob payload fails its CRC32")

    offset = 0

    def take(dtype: str, count: int) -> npt.NDArray[np.generic]:
        nonlocal offset
        arr = np.frombuffer(view, dtype=dtype, count=count, offset=offset)  # zero-copy
        offset += arr.nbytes
        return arr

    states = take("<f4", n_states).reshape(n_mod, n_layers, m, d)
    mask = take("u1", m).astype(bool)
    history = History(
        video_ids=take("<i8", h).astype(np.int64),
        time_ms=take("<i8", h).astype(np.int64),
        exit_slots=take("<i4", h).astype(np.int64),
        n_segments=take("<i4", h).astype(np.int64),
    )
    if n_states == 0 and m == 0:
        return UserState(history, None, None)
    return UserState(history, states.astype(np.float32, copy=False), mask)


def history_feeds(
    history: History, videos: Vocab, max_len: int, s_max: int
) -> dict[str, npt.NDArray[np.generic]]:
    """One user's history as model inputs, right-padded like training's collate.

    Padding is video 0 (unknown), exit slot 0, one segment and mask False, to
    ``H = max(h, 1)`` columns where ``h`` is the history length capped at ``max_len``.

    Returns:
        ``hist_video_ids``, ``hist_exit_slots``, ``hist_n_segments`` (int64) and ``hist_mask``
        (bool), each of shape (1, H).
    """
    h = min(len(history), max_len)
    width = max(h, 1)
    hist_video = np.zeros((1, width), dtype=np.int64)
    hist_exit = np.zeros((1, width), dtype=np.int64)
    hist_nseg = np.ones((1, width), dtype=np.int64)
    hist_mask = np.zeros((1, width), dtype=bool)
    hist_video[0, :h] = videos.lookup(history.video_ids[:h])
    hist_exit[0, :h] = np.clip(history.exit_slots[:h], 0, s_max)
    hist_nseg[0, :h] = np.clip(history.n_segments[:h], 1, s_max)
    hist_mask[0, :h] = True
    return {
        "hist_video_ids": hist_video,
        "hist_exit_slots": hist_exit,
        "hist_n_segments": hist_nseg,
        "hist_mask": hist_mask,
    }
