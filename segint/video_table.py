"""The per-video exit table the service mixes into the network's exit distribution (numpy
only: `segint evaluate` and `service/` import this one module, so the offline metrics and the
served values are the same rule).

Issue 11's learned baseline ``hazard-gbdt`` turns a video's own statistics (its smoothed exit
profile, N, duration, side codes) into an exit distribution better than the network's
count-smoothed log-prior does; the trees' lead over the network is video-level
(docs/results/user-signal.md, rounds 6 and 7). Trees fitted on the features that depend on the
video alone (`training.video_trees`) give one distribution per vocabulary video, so they are a
table, served with no tree runtime and no online features. For a candidate whose video is in
the table with the same ``N`` as the request's, the served exit distribution is

    p = (1 - w) * p_network + w * p_table[video]

and every watch-time output (``predicted_exit_slot``, ``expected_watch_ms``,
``median_watch_ms``, ``completion_probability``, ``skip_probability``) is read off ``p``.
Other candidates (unknown videos, another ``N``) keep ``p_network``. ``segment_scores``,
thumbnails and the CTR head keep the network's logits: the table has no per-user signal.

The table lives in the run (``RUN/video_trees.npz``, written by `segint train` when
``optim.video_trees`` > 0 or by `segint evaluate --video-trees W`) and in the artifact
(``video_trees.npz``, named with its sha256 in the manifest's ``video_table``).
"""

from __future__ import annotations

import functools
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segint.errors import SegintError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
TABLE_FILE = "video_trees.npz"


@dataclass(frozen=True)
class VideoTable:
    """Row ``i`` = vocabulary row ``i`` (row 0, the unknown video, has ``N = 0``: never mixed).

    ``dist[i, :N_i + 1]`` sums to 1 (for ``N_i = S`` the ``S`` columns, as the network's
    distribution does); ``n_segments[i]`` is the ``N`` it was computed for.
    """

    dist: FloatArray  # (V, S) exit distribution per vocabulary video
    n_segments: IntArray  # (V,) its N; 0 = no row (mixes nothing)
    weight: float  # w: the table's share of the served distribution, in (0, 1]
    meta: dict[str, Any] = field(default_factory=dict)  # how it was fitted

    def __post_init__(self) -> None:
        if self.dist.ndim != 2 or self.n_segments.shape != (self.dist.shape[0],):
            raise SegintError(
                f"video table: dist {self.dist.shape} and n_segments {self.n_segments.shape} "
                "do not match"
            )
        if not (math.isfinite(self.weight) and 0.0 < self.weight <= 1.0):
            raise SegintError(f"video table weight must be in (0, 1], got {self.weight}")

    def mixed(self, video_idx: npt.ArrayLike, n_segments: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """(C,) which candidates take the table: a row for their video with their ``N``."""
        idx = np.asarray(video_idx, dtype=np.int64)
        inside = (idx > 0) & (idx < len(self.n_segments))
        same_n = self.n_segments[np.where(inside, idx, 0)] == np.asarray(n_segments)
        out: npt.NDArray[np.bool_] = inside & same_n
        return out

    def mix(
        self, dist: FloatArray, video_idx: npt.ArrayLike, n_segments: npt.ArrayLike
    ) -> npt.NDArray[np.bool_]:
        """Mix the table into ``dist`` (C, S) in place; returns the mixed rows."""
        use = self.mixed(video_idx, n_segments)
        rows = np.flatnonzero(use)
        if len(rows):
            block = dist[rows]  # a copy: scaled and added to in place, then written back
            block *= 1.0 - self.weight
            block += self.scaled.take(np.asarray(video_idx, dtype=np.int64)[rows], axis=0)
            dist[rows] = block
        return use

    @functools.cached_property
    def scaled(self) -> FloatArray:
        """``w * dist`` (float64, C-contiguous), computed once (the service mixes on every
        request)."""
        out: FloatArray = np.ascontiguousarray(
            np.multiply(self.weight, self.dist, dtype=np.float64)
        )
        return out

    def write(self, folder: str | Path) -> Path:
        """``folder/video_trees.npz`` (float32 distribution, as served)."""
        path = Path(folder) / TABLE_FILE
        with path.open("wb") as f:
            np.savez(
                f,
                dist=self.dist.astype(np.float32),
                n_segments=self.n_segments.astype(np.int16),
                weight=np.float64(self.weight),
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
            )
        return path

    @classmethod
    def read(cls, path: str | Path) -> VideoTable:
        """Load a table file; any problem is a `SegintError` naming the file."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                table = cls(
                    dist=z["dist"].astype(np.float64),
                    n_segments=z["n_segments"].astype(np.int64),
                    weight=float(z["weight"]),
                    meta=json.loads(str(z["meta"])),
                )
        except FileNotFoundError:
            raise SegintError(f"{path}: no video table") from None
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise SegintError(f"{path}: unreadable video table ({e})") from None
        return table

    def check(self, n_videos: int, s_max: int, where: str) -> None:
        """Refuse a table of another vocabulary size or slot count than its model's."""
        if self.dist.shape != (n_videos, s_max):
            raise SegintError(
                f"{where}: video table of shape {self.dist.shape}, the model has {n_videos} "
                f"vocabulary videos and {s_max} slots"
            )


def read_run_table(run_dir: str | Path) -> VideoTable | None:
    """``RUN/video_trees.npz``, or None when the run has none."""
    path = Path(run_dir) / TABLE_FILE
    return VideoTable.read(path) if path.is_file() else None
