"""Crash-safe, append-only writer of a segment feature store (layout in `store`).

Commit protocol (each step durable before the next):

1. append the new rows to ``features.f32`` and ``fsync`` it;
2. write the full index of committed + new rows to a fresh ``index-<gen>.npz`` and ``fsync``;
3. write ``meta.json.tmp`` (count, index name) and ``os.replace`` it over ``meta.json`` — the
   commit point — then ``fsync`` the directory;
4. delete the previous index file.

A crash before step 3 leaves ``meta.json`` naming the old index and count, so readers see the
old state; the next writer truncates the data file back to the committed size and removes the
orphaned index. A crash after step 3 leaves a committed store. One writer at a time (an
exclusive ``flock`` on ``.lock``); readers never block.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from segint.errors import DataError, SegintError
from segint.features.store import (
    DATA_FILE,
    FORMAT,
    META_FILE,
    VERSION,
    read_index,
    read_meta,
)

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, write: Any) -> None:
    """Write a file through ``write(fh)`` into ``path`` and fsync it (no rename)."""
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


class FeatureWriter:
    """Append segment vectors to a store, creating it when missing.

    Use as a context manager; leaving the block commits what was added (also on an exception
    or Ctrl-C, so long runs resume where they stopped).

    Args:
        path: the store directory.
        dim: vector width; must equal the store's when it exists.
        encoder: encoder name recorded in the metadata (checked against an existing store
            unless empty).
        feature: feature kind (``patch_mean``, ``projected``, ...), checked likewise.
        info: extra metadata recorded when the store is created (e.g. the import source).
        commit_every_s: `maybe_commit` commits when this many seconds passed since the last.
    """

    def __init__(
        self,
        path: str | Path,
        dim: int,
        *,
        encoder: str = "",
        feature: str = "",
        info: dict[str, Any] | None = None,
        commit_every_s: float = 5.0,
    ) -> None:
        if dim < 1:
            raise SegintError(f"feature dim must be >= 1, got {dim}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK_FILE, "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SegintError(f"{self.path}: another writer is using this store") from None
        try:
            self._open_or_create(dim, encoder, feature, info or {})
        except BaseException:
            self._release()
            raise
        self.commit_every_s = commit_every_s
        self._last_commit = time.monotonic()

    # ---- opening -------------------------------------------------------------------------
    def _open_or_create(self, dim: int, encoder: str, feature: str, info: dict[str, Any]) -> None:
        if not (self.path / META_FILE).exists():
            self.meta: dict[str, Any] = {
                "format": FORMAT,
                "version": VERSION,
                "dim": dim,
                "dtype": "float32",
                "encoder": encoder,
                "feature": feature,
                "count": 0,
                "n_videos": 0,
                "generation": 0,
                "index": "index-000000.npz",
                **info,
            }
            self._vids = np.zeros(0, np.int64)
            self._segs = np.zeros(0, np.int32)
            self._write_index(self.meta["index"])
            self._write_meta()
        else:
            self.meta = read_meta(self.path)
            for key, want in (("dim", dim), ("encoder", encoder), ("feature", feature)):
                if want and self.meta.get(key) != want:
                    raise SegintError(
                        f"{self.path}: store has {key}={self.meta.get(key)!r}, not {want!r}"
                    )
            self._vids, self._segs = read_index(self.path, self.meta)
        self.dim = int(self.meta["dim"])
        self._recover()
        self._data: IO[bytes] = open(self.path / DATA_FILE, "r+b")  # noqa: SIM115
        self._data.seek(0, os.SEEK_END)
        self._committed_videos = np.unique(self._vids)
        self._pending_vids: list[npt.NDArray[np.int64]] = []
        self._pending_segs: list[npt.NDArray[np.int32]] = []
        self._pending_video_set: set[int] = set()

    def _recover(self) -> None:
        """Drop what a crashed writer left behind: a torn data tail and orphaned index files."""
        data = self.path / DATA_FILE
        committed = int(self.meta["count"]) * self.dim * 4
        size = data.stat().st_size if data.exists() else 0
        if size < committed:
            raise DataError(f"{data}: {size} bytes, too short for {self.meta['count']} rows")
        if size > committed or not data.exists():
            if size > committed:
                log.warning("%s: discarding %d uncommitted bytes", data, size - committed)
            with open(data, "ab") as fh:
                fh.truncate(committed)
                os.fsync(fh.fileno())
        for p in self.path.glob("index-*.npz*"):
            if p.name != self.meta["index"]:
                p.unlink()
        (self.path / (META_FILE + ".tmp")).unlink(missing_ok=True)

    # ---- appending -----------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows committed plus rows added since."""
        return len(self._vids) + sum(len(v) for v in self._pending_vids)

    def has_video(self, video_id: int) -> bool:
        """Whether ``video_id`` is committed or added in this session."""
        i = np.searchsorted(self._committed_videos, video_id)
        committed = i < len(self._committed_videos) and self._committed_videos[i] == video_id
        return bool(committed) or int(video_id) in self._pending_video_set

    def add(self, video_id: int, features: npt.ArrayLike) -> None:
        """Append all segments of one video: row ``j`` of ``features`` (N, D) is segment ``j``."""
        if self.has_video(video_id):
            raise DataError(f"video {video_id} is already in {self.path}")
        x = np.asarray(features, dtype=np.float32)
        if len(x) == 0:
            raise DataError(f"video {video_id}: no segment vectors")
        self.add_rows(np.full(len(x), video_id, np.int64), np.arange(len(x)), x)
        self._pending_video_set.add(int(video_id))

    def add_rows(
        self, video_ids: npt.ArrayLike, segments: npt.ArrayLike, features: npt.ArrayLike
    ) -> None:
        """Append arbitrary ``(video_id, segment)`` rows; duplicate keys fail at `commit`."""
        vids = np.asarray(video_ids, dtype=np.int64).reshape(-1)
        segs = np.asarray(segments, dtype=np.int64).reshape(-1)
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape != (len(vids), self.dim) or len(segs) != len(vids):
            raise DataError(
                f"features must be ({len(vids)}, {self.dim}) with as many keys, got {x.shape}"
            )
        if len(segs) and (segs.min() < 0 or segs.max() > np.iinfo(np.int32).max):
            raise DataError("segment indices must be in [0, 2**31)")
        if not np.isfinite(x).all():
            raise DataError(f"non-finite feature values for video(s) {np.unique(vids)[:5]}")
        self._data.write(x.tobytes())
        self._pending_vids.append(vids)
        self._pending_segs.append(segs.astype(np.int32))

    # ---- committing ----------------------------------------------------------------------
    def maybe_commit(self) -> bool:
        """Commit when ``commit_every_s`` seconds passed since the last commit."""
        if time.monotonic() - self._last_commit >= self.commit_every_s:
            self.commit()
            return True
        return False

    def commit(self) -> None:
        """Make every added row durable and visible to readers (no-op when nothing is new)."""
        self._last_commit = time.monotonic()
        if not self._pending_vids:
            return
        vids = np.concatenate([self._vids, *self._pending_vids])
        segs = np.concatenate([self._segs, *self._pending_segs])
        order = np.lexsort((segs, vids))
        dup = (np.diff(vids[order]) == 0) & (np.diff(segs[order]) == 0)
        if dup.any():
            i = order[1:][dup][0]
            self.rollback()
            raise DataError(f"duplicate key video {vids[i]} segment {segs[i]}; nothing committed")
        self._data.flush()
        os.fsync(self._data.fileno())  # step 1: rows are on disk before anything names them
        old_index = self.meta["index"]
        gen = int(self.meta["generation"]) + 1
        new_index = f"index-{gen:06d}.npz"
        prev = (self._vids, self._segs)
        self._vids, self._segs = vids, segs
        try:
            self._write_index(new_index)  # step 2
            self.meta.update(
                count=len(vids), n_videos=len(np.unique(vids)), generation=gen, index=new_index
            )
            self._write_meta()  # step 3: the commit point
        except BaseException:
            self._vids, self._segs = prev
            raise
        (self.path / old_index).unlink(missing_ok=True)  # step 4
        self._committed_videos = np.unique(vids)
        self._pending_vids, self._pending_segs = [], []
        self._pending_video_set.clear()

    def rollback(self) -> None:
        """Discard the rows added since the last commit."""
        self._data.truncate(len(self._vids) * self.dim * 4)
        self._data.seek(0, os.SEEK_END)
        self._pending_vids, self._pending_segs = [], []
        self._pending_video_set.clear()

    def _write_index(self, name: str) -> None:
        def write(fh: IO[bytes]) -> None:
            np.savez(fh, video_id=self._vids, segment=self._segs)

        _write_durably(self.path / name, write)

    def _write_meta(self) -> None:
        tmp = self.path / (META_FILE + ".tmp")
        _write_durably(tmp, lambda fh: fh.write(json.dumps(self.meta, indent=2).encode()))
        os.replace(tmp, self.path / META_FILE)
        _fsync_dir(self.path)

    # ---- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Commit and release the store."""
        try:
            self.commit()
        finally:
            self._release()

    def _release(self) -> None:
        data = getattr(self, "_data", None)
        if data is not None and not data.closed:
            data.close()
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
