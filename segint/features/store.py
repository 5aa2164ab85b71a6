"""Segment feature store: ``(video_id, segment_index) -> float32 vector`` (spec section 5).

Pure numpy (no torch), so the service can read it. A store is a directory:

* ``features.f32`` — row-major float32 rows of width ``dim``, append-only;
* ``index-<generation>.npz`` — ``video_id`` (int64) and ``segment`` (int32) of each row, in row
  order (row ``i`` of the data file belongs to entry ``i`` of the index);
* ``meta.json`` — ``dim``, ``dtype``, ``encoder``, ``feature``, ``count`` and the name of the
  current index file. Replacing ``meta.json`` is the single commit point (see
  `segint.features.writer`): a reader maps only the first ``count`` rows, so rows appended by a
  writer that crashed before its commit are invisible.

Video ids are int64, as everywhere in segint. Segment ``j`` covers ``[5j, 5j + 5)`` seconds.

Shapes: ``C`` videos, ``S`` slots (``s_max``), ``B`` rows, ``H`` history entries, ``D`` = ``dim``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segint.errors import DataError

FORMAT = "segint-segment-features"
VERSION = 1
DATA_FILE = "features.f32"
META_FILE = "meta.json"
L1_EPS = 1e-6  # the reference's x / (|x|_1 + 1e-6)
# History means are gathered in chunks of this many views to bound memory.
_CHUNK_VIEWS = 8192

F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
I64Array = npt.NDArray[np.int64]


def l1_normalize(x: npt.ArrayLike) -> F32Array:
    """Row-wise ``x / (|x|_1 + 1e-6)`` over the last axis (the reference's SegMM input scaling).

    Zero rows (padding) stay zero.
    """
    a = np.asarray(x, dtype=np.float32)
    out: F32Array = (a / (np.abs(a).sum(axis=-1, keepdims=True) + L1_EPS)).astype(np.float32)
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """The parsed ``meta.json`` of a store, checked for format and version."""
    p = Path(path) / META_FILE
    if not p.is_file():
        raise DataError(f"{path}: not a segment feature store (no {META_FILE})")
    try:
        meta: dict[str, Any] = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: unreadable store metadata: {e}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(
            f"{p}: unsupported store format {meta.get('format')!r} version {meta.get('version')!r}"
        )
    if meta.get("dtype") != "float32" or int(meta.get("dim", 0)) < 1:
        raise DataError(f"{p}: bad dtype/dim {meta.get('dtype')!r}/{meta.get('dim')!r}")
    return meta


def read_index(path: str | Path, meta: dict[str, Any]) -> tuple[I64Array, npt.NDArray[np.int32]]:
    """``(video_id, segment)`` arrays of the committed rows named by ``meta``."""
    p = Path(path) / meta["index"]
    with np.load(p) as z:
        vids = np.asarray(z["video_id"], dtype=np.int64)
        segs = np.asarray(z["segment"], dtype=np.int32)
    if len(vids) != meta["count"] or len(segs) != meta["count"]:
        raise DataError(f"{p}: index holds {len(vids)} rows, {META_FILE} says {meta['count']}")
    return vids, segs


class FeatureStore:
    """Read-only snapshot of a segment feature store.

    Open with `FeatureStore.open`. Rows appended after opening are not seen; open again to
    refresh. Missing segments read as zeros with ``mask == False``.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        video_ids: I64Array,
        segments: npt.NDArray[np.int32],
        l1_normalize: bool,
    ) -> None:
        self.path = path
        self.meta = meta
        self.dim = int(meta["dim"])
        self.l1_normalize = l1_normalize
        n = len(video_ids)
        data_path = path / DATA_FILE
        size = data_path.stat().st_size if data_path.exists() else 0
        if size < n * self.dim * 4:
            raise DataError(f"{data_path}: {size} bytes, too short for {n} committed rows")
        self._data: F32Array = (
            np.memmap(data_path, dtype=np.float32, mode="r", shape=(n, self.dim))
            if n
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        # Lookups go through the rows sorted by (video, segment); _row maps back to data rows.
        order = np.lexsort((segments, video_ids))
        self._vid = video_ids[order]
        self._seg = segments[order]
        self._row = order.astype(np.int64)
        self.video_ids: I64Array = np.unique(self._vid)  # sorted ids of the stored videos

    @classmethod
    def open(cls, path: str | Path, *, l1_normalize: bool = False) -> FeatureStore:
        """Open the committed state of the store at ``path``.

        Args:
            path: the store directory.
            l1_normalize: return every vector L1-normalised as the reference does before the
                model (``x / (|x|_1 + 1e-6)``); history means average normalised vectors.
        """
        p = Path(path)
        for attempt in range(5):
            meta = read_meta(p)
            try:
                vids, segs = read_index(p, meta)
                break
            except FileNotFoundError:
                # A writer committed between our two reads and removed the old index: retry.
                if attempt == 4:
                    raise DataError(f"{p}: index file {meta['index']} is missing") from None
                time.sleep(0.05)
        return cls(p, meta, vids, segs, l1_normalize)

    # ---- basic lookups -------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Number of stored segment vectors."""
        return len(self._row)

    def __len__(self) -> int:
        """Number of stored videos."""
        return len(self.video_ids)

    def has(self, video_id: int) -> bool:
        """Whether any segment of ``video_id`` is stored."""
        i = np.searchsorted(self.video_ids, video_id)
        return bool(i < len(self.video_ids) and self.video_ids[i] == video_id)

    def segments(self, video_id: int) -> npt.NDArray[np.int32]:
        """Sorted segment indices stored for ``video_id`` (empty when unknown)."""
        lo, hi = np.searchsorted(self._vid, [video_id, video_id + 1])
        return self._seg[lo:hi].copy()

    def contains(self, video_ids: npt.ArrayLike, segments: npt.ArrayLike) -> BoolArray:
        """Whether each ``(video_ids[i], segments[i])`` key is stored (vectorised)."""
        vids = np.asarray(video_ids, dtype=np.int64).reshape(-1)
        segs = np.asarray(segments, dtype=np.int64).reshape(-1)
        owner, seg, _ = self._gather(vids, segs + 1)
        found = np.zeros(len(vids), dtype=bool)
        found[owner[seg == segs[owner]]] = True
        return found

    def get(self, video_id: int, n_segments: int) -> tuple[F32Array, BoolArray]:
        """Features of segments ``0..n_segments-1`` of one video.

        Returns:
            ``(features (n_segments, D) float32, mask (n_segments,) bool)``; missing segments
            are zero rows with ``mask == False``.
        """
        feats, mask = self.video_matrix([video_id], [n_segments], n_segments)
        return feats[0], mask[0]

    # ---- batched model inputs ------------------------------------------------------------
    def video_matrix(
        self, video_ids: npt.ArrayLike, n_segments: npt.ArrayLike, s_max: int
    ) -> tuple[F32Array, BoolArray]:
        """Per-slot features of ``C`` videos, the model's ``video_content``.

        Args:
            video_ids: (C,) raw video ids.
            n_segments: (C,) segments of each video (or a scalar); slots ``>= n`` stay zero.
            s_max: number of slots ``S``.

        Returns:
            ``(features (C, S, D) float32, mask (C, S) bool)``; True where a vector was found.
        """
        vids = np.asarray(video_ids, dtype=np.int64).reshape(-1)
        limit = np.minimum(np.broadcast_to(np.asarray(n_segments, np.int64), vids.shape), s_max)
        out = np.zeros((len(vids), s_max, self.dim), dtype=np.float32)  # (C, S, D)
        mask = np.zeros((len(vids), s_max), dtype=bool)  # (C, S)
        owner, seg, rows = self._gather(vids, limit)
        if len(rows):
            out[owner, seg] = self._read(rows)
            mask[owner, seg] = True
        return out, mask

    def history_means(
        self,
        video_ids: npt.ArrayLike,
        exit_slots: npt.ArrayLike,
        n_segments: npt.ArrayLike,
        mask: npt.ArrayLike | None = None,
    ) -> tuple[F32Array, BoolArray]:
        """Mean feature of the watched segments of each history view, the model's ``hist_content``.

        A view with exit slot ``e`` of a video with ``N`` segments watched segments
        ``0..min(e, N - 1)`` (the exit segment was partly watched; ``e == N`` is a complete
        view). Segments missing from the store are left out of the mean.

        Args:
            video_ids: (B, H) raw video ids of the history views.
            exit_slots: (B, H) exit slot of each view.
            n_segments: (B, H) segments of each history video.
            mask: (B, H) True for real entries (default: all real).

        Returns:
            ``(means (B, H, D) float32, found (B, H) bool)``; entries with no stored watched
            segment (or masked out) are zero with ``found == False``.
        """
        vids = np.asarray(video_ids, dtype=np.int64)
        shape = vids.shape
        exits = np.asarray(exit_slots, dtype=np.int64).reshape(-1)
        n = np.asarray(n_segments, dtype=np.int64).reshape(-1)
        watched = np.clip(np.minimum(exits + 1, n), 0, None)  # segments 0..watched-1
        if mask is not None:
            watched = np.where(np.asarray(mask, dtype=bool).reshape(-1), watched, 0)
        flat = vids.reshape(-1)
        means = np.zeros((len(flat), self.dim), dtype=np.float32)  # (B*H, D)
        found = np.zeros(len(flat), dtype=bool)
        for lo in range(0, len(flat), _CHUNK_VIEWS):
            hi = min(lo + _CHUNK_VIEWS, len(flat))
            owner, _, rows = self._gather(flat[lo:hi], watched[lo:hi])
            if not len(rows):
                continue
            # owner is non-decreasing, so each view's rows are one contiguous run.
            uniq, starts = np.unique(owner, return_index=True)
            sums = np.add.reduceat(self._read(rows).astype(np.float64), starts, axis=0)
            counts = np.diff(np.append(starts, len(owner)))
            means[lo + uniq] = sums / counts[:, None]
            found[lo + uniq] = True
        return means.reshape(*shape, self.dim), found.reshape(shape)

    # ---- internals -----------------------------------------------------------------------
    def _gather(self, vids: I64Array, limit: I64Array) -> tuple[I64Array, I64Array, I64Array]:
        """Stored segments ``seg < limit[i]`` of each ``vids[i]``: (owner i, segment, data row).

        Vectorised: each video's stored segments are a contiguous run ``[lo, hi)`` of the
        sorted keys; the runs are expanded with repeat/arange instead of a Python loop.
        """
        lo = np.searchsorted(self._vid, vids, side="left")
        hi = np.searchsorted(self._vid, vids, side="right")
        counts = hi - lo
        owner = np.repeat(np.arange(len(vids), dtype=np.int64), counts)
        run_start = np.cumsum(counts) - counts
        pos = np.arange(counts.sum(), dtype=np.int64) + np.repeat(lo - run_start, counts)
        seg = self._seg[pos].astype(np.int64)
        keep = seg < limit[owner]
        return owner[keep], seg[keep], self._row[pos[keep]]

    def _read(self, rows: I64Array) -> F32Array:
        """Data rows (n, D) in the given order, L1-normalised when the store was opened so."""
        x = np.asarray(self._data[rows], dtype=np.float32)
        return l1_normalize(x) if self.l1_normalize else x
