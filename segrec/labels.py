"""The task-2 label: an "effective view" (spec section 4; reference section 1.8).

A view is effective when its view ratio ``play_ms / duration_ms`` is above the median view
ratio of its video's duration bucket. Buckets are left-closed ``[edge_k, edge_k+1)`` in
seconds; durations outside the edges fall into the first / last bucket. The medians come from
the *training* rows only (the reference hard-codes medians computed over all splits, which
leaks test rows into the label definition) and are stored with the model, so evaluation and
serving label and threshold exactly as training did. Pure numpy.

What the label means depends on the bucket. On KuaiRand-Pure (04-25..30, training rows of the
temporal split) the medians are 1.057, 0.851, 0.588, 0.452, 0.332, 0.217, 0.187: for 30 s and
longer videos an effective view is "watched more than that fraction", but for **0-30 s videos
the threshold is above 1.0**, so a short-video view is effective only when the user watched it
to the end *and replayed* past 105.7% of its length; every view that stops at or before the
end is negative. In exit-slot terms the label of a short video is a subset of "completed"
(slot N), and the segment interest model, which only sees where a view ended, cannot tell a
replay from a single completion. (`tests/segrec/test_labels.py` pins this.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Reference: 7 buckets of 30 s (the last one 20 s wide, videos are < 200 s).
REFERENCE_EDGES_S: tuple[float, ...] = (0, 30, 60, 90, 120, 150, 180, 200)


def view_ratio(play_ms: npt.ArrayLike, duration_ms: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``play_ms / duration_ms`` (> 1 for replays)."""
    d = np.asarray(duration_ms, dtype=np.float64)
    if np.any(d <= 0):
        raise ValueError("durations must be > 0 (filter the log first)")
    return np.asarray(play_ms, dtype=np.float64) / d


@dataclass(frozen=True)
class EffectiveViewLabel:
    """Bucket edges (seconds) and one median view ratio per bucket."""

    edges_s: tuple[float, ...]
    medians: tuple[float, ...]

    def __post_init__(self) -> None:
        check_edges(self.edges_s)
        if len(self.medians) != len(self.edges_s) - 1:
            raise ValueError(
                f"{len(self.edges_s) - 1} buckets but {len(self.medians)} medians given"
            )

    def bucket(self, duration_ms: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bucket index of each duration, ``[edge_k, edge_k+1)``, clipped to the end buckets."""
        return duration_bucket(duration_ms, self.edges_s)

    def threshold(self, duration_ms: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The median view ratio each view is compared with."""
        return np.asarray(self.medians, dtype=np.float64)[self.bucket(duration_ms)]

    def __call__(
        self, play_ms: npt.ArrayLike, duration_ms: npt.ArrayLike
    ) -> npt.NDArray[np.float32]:
        """(n,) 1.0 for an effective view, else 0.0."""
        above = view_ratio(play_ms, duration_ms) > self.threshold(duration_ms)
        return above.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"edges_s": list(self.edges_s), "medians": list(self.medians)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EffectiveViewLabel:
        return cls(tuple(data["edges_s"]), tuple(data["medians"]))


def check_edges(edges_s: Sequence[float]) -> None:
    """At least two strictly increasing edges."""
    e = np.asarray(edges_s, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0) or not np.all(np.isfinite(e)):
        raise ValueError(f"bucket edges must be >= 2 strictly increasing numbers, got {edges_s}")


def duration_bucket(duration_ms: npt.ArrayLike, edges_s: Sequence[float]) -> npt.NDArray[np.int64]:
    """Index ``k`` with ``edges[k] <= duration_s < edges[k+1]``, clipped to ``0..K-1``."""
    d_s = np.asarray(duration_ms, dtype=np.float64) / 1000.0
    k = np.searchsorted(np.asarray(edges_s, dtype=np.float64), d_s, side="right") - 1
    return np.clip(k, 0, len(edges_s) - 2).astype(np.int64)


def fit_label(
    play_ms: npt.ArrayLike,
    duration_ms: npt.ArrayLike,
    edges_s: Sequence[float] = REFERENCE_EDGES_S,
) -> EffectiveViewLabel:
    """Medians of the view ratio per duration bucket over the given (training) rows.

    A bucket without training rows gets the median of all training rows, so every duration
    still has a threshold.
    """
    check_edges(edges_s)
    ratio = view_ratio(play_ms, duration_ms)
    if len(ratio) == 0:
        raise ValueError("no training rows to compute the label medians from")
    k = duration_bucket(duration_ms, edges_s)
    overall = float(np.median(ratio))
    medians = tuple(
        float(np.median(ratio[k == b])) if np.any(k == b) else overall
        for b in range(len(edges_s) - 1)
    )
    return EffectiveViewLabel(tuple(float(e) for e in edges_s), medians)


def thresholds_by_n(label: EffectiveViewLabel, s_max: int) -> tuple[float, ...]:
    """(s_max,) the view-ratio threshold of a video with N = 1..s_max segments (index N - 1).

    The exported graph knows N = ceil(duration / 5 s), not the duration, so a video of N
    segments is taken to last (N - 0.5) * 5 s, the middle of its possible durations; only a
    duration within 2.5 s of a bucket edge can get the neighbouring bucket's threshold.
    """
    from segint.segments import SEGMENT_MS

    mid_ms = (np.arange(1, s_max + 1, dtype=np.float64) - 0.5) * SEGMENT_MS
    return tuple(float(t) for t in label.threshold(mid_ms))
