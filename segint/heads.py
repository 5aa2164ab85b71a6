"""Serving heads derived from per-slot interest logits (spec section 2.5). Pure numpy.

A view of a video with ``N`` segments has ``N + 1`` outcomes: leave in slot ``0..N-1`` or
watch to the end (slot ``N``). Higher interest = less likely to leave, so the exit
distribution is ``softmax(-logits)`` over the real outcomes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segint.segments import SEGMENT_MS

FloatArray = npt.NDArray[np.float64]


def outcome_mask(n_segments: npt.ArrayLike, s_max: int) -> npt.NDArray[np.bool_]:
    """(n, s_max) True on slots ``0..N`` (the slot ``N`` exists only when ``N < s_max``)."""
    n = np.asarray(n_segments, dtype=np.int64)
    return np.arange(s_max)[None, :] <= n[:, None]


def exit_distribution(
    logits: npt.ArrayLike, mask: npt.NDArray[np.bool_] | None = None
) -> FloatArray:
    """``softmax(-logits)`` along the last axis, over ``mask`` (all slots when None).

    In place on one float64 copy (`softmax_in_place`): the same operations, in the same order,
    as the out-of-place form, so the same values."""
    z: FloatArray = np.negative(np.asarray(logits), dtype=np.float64)
    return softmax_in_place(z, None if mask is None else ~mask)


def softmax_in_place(z: FloatArray, excluded: npt.NDArray[np.bool_] | None = None) -> FloatArray:
    """Softmax of the float64 array ``z`` along its last axis, in place (returns ``z``); the
    ``excluded`` entries get probability 0."""
    if excluded is not None:
        np.copyto(z, -np.inf, where=excluded)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def expected_exit_slot(dist: FloatArray) -> npt.NDArray[np.int64]:
    """Reference rule: the expected slot index, truncated (``int(sum_j j p_j)``)."""
    return np.floor(dist @ np.arange(dist.shape[-1])).astype(np.int64)


def expected_watch_ms(dist: FloatArray, duration_ms: npt.ArrayLike) -> FloatArray:
    """Expected watch time: leaving in slot j is counted as mid-segment, finishing as the duration."""
    s = dist.shape[-1]
    d = np.asarray(duration_ms, dtype=np.float64)[:, None]
    n = np.ceil(d / SEGMENT_MS)
    j = np.arange(s)[None, :]
    watched = np.minimum((j + 0.5) * SEGMENT_MS, d)  # (n, S): slot j's watch time, j < N
    np.copyto(watched, np.broadcast_to(d, watched.shape), where=j >= n)  # finished: all of it
    watched *= dist
    out: FloatArray = watched.sum(axis=-1)
    return out


def completion_probability(dist: FloatArray, n_segments: npt.ArrayLike) -> FloatArray:
    """Probability mass on slot ``N`` (0 where ``N == s_max``: no slot for completion)."""
    n = np.asarray(n_segments, dtype=np.int64)
    s = dist.shape[-1]
    inside = n < s
    out = np.zeros(len(n))
    out[inside] = dist[np.flatnonzero(inside), n[inside]]
    return out
