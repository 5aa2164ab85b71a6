"""Segment arithmetic shared by the data pipeline, the model and the service.

Pure numpy, no torch and no polars, so the service can import it.

Terms (spec section 1): a video of ``duration_ms`` has ``N = ceil(duration_ms / 5000)``
segments; a view that ended after ``play_ms`` left in slot ``ceil(play_ms / 5000) - 1`` when
``play_ms < duration_ms``, else it was watched to the end and its exit slot is ``N``. A view
therefore has ``N + 1`` possible outcomes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SEGMENT_MS = 5000
DEFAULT_S_MAX = 40

IntArray = npt.NDArray[np.int64]


def n_segments(duration_ms: npt.ArrayLike) -> IntArray:
    """Number of 5-second segments, ``ceil(duration_ms / 5000)`` (0 for a 0 ms video)."""
    d = np.asarray(duration_ms, dtype=np.int64)
    return (d + SEGMENT_MS - 1) // SEGMENT_MS


def exit_slot(play_ms: npt.ArrayLike, duration_ms: npt.ArrayLike) -> IntArray:
    """Slot in which each view ended; ``N`` for views watched to the end.

    Args:
        play_ms: watch time in ms (> 0).
        duration_ms: video duration in ms (> 0).

    Returns:
        int64 array, ``ceil(play/5000) - 1`` for skipped views, ``N`` for complete ones.
    """
    p = np.asarray(play_ms, dtype=np.int64)
    d = np.asarray(duration_ms, dtype=np.int64)
    skipped = (p + SEGMENT_MS - 1) // SEGMENT_MS - 1
    return np.where(p >= d, n_segments(d), np.maximum(skipped, 0))


def label_1d(exit: int, n: int) -> list[int]:
    """SegMM ``label_1D`` of one view: 1 watched, 0 exit segment, -1 never reached.

    ``label_j = sign(exit - j)`` for ``j < n``; a complete view (``exit == n``) is all ones.
    """
    return [int(np.sign(exit - j)) for j in range(n)]


def segment_bounds_ms(slot: int, duration_ms: int) -> tuple[int, int]:
    """Start and end (ms) of one segment, the last one clipped to the duration."""
    start = slot * SEGMENT_MS
    return start, min(start + SEGMENT_MS, duration_ms)
