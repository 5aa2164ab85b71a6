"""The outage journal: view events acknowledged while Redis is unavailable, kept on disk.

While Redis is down a view event is applied to the in-process fallback and kept in memory for
replay (`UserStates.pending`). Memory alone does not survive a crash or a redeploy, so each
such event is also appended to this journal, and the 200 is sent only after an ``fsync``
covers it. On start the journal is read back into the pending events; the replay task applies
them to Redis when it answers (applying a view is idempotent on user, video and time, so a
replay of an event that did reach Redis changes nothing) and truncates the journal once no
event is pending.

Commits are grouped: an append waits for the next ``fsync`` that covers it, and events that
arrive while an ``fsync`` is in flight share the following one. With one event at a time
that is an ``fsync`` per event; under concurrent load, one per small group
(``bench/bench_journal.py`` measures both).

Format: fixed 44-byte records, five little-endian int64 (user, video, duration, play time,
time) and the CRC32 of those 40 bytes. A record torn by a crash fails its CRC (or is short);
reading stops there and the file is cut back to the last whole record.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

from segint.errors import SegintError

log = logging.getLogger(__name__)

_BODY = struct.Struct("<5q")
_RECORD = _BODY.size + 4  # + CRC32

# (user_id, video_id, duration_ms, play_time_ms, time_ms)
Entry = tuple[int, int, int, int, int]


class JournalError(SegintError):
    """The journal cannot be opened (in use by another process, unwritable)."""


def encode(entry: Entry) -> bytes:
    body = _BODY.pack(*entry)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_all(data: bytes) -> tuple[list[Entry], int]:
    """The whole records at the start of ``data`` and how many bytes they take."""
    entries: list[Entry] = []
    end = 0
    while end + _RECORD <= len(data):
        body = data[end : end + _BODY.size]
        (crc,) = struct.unpack_from("<I", data, end + _BODY.size)
        if zlib.crc32(body) != crc:
            break
        entries.append(_BODY.unpack(body))
        end += _RECORD
    return entries, end


class Journal:
    """An append-only, fsync'd file of view events; one process at a time (``flock``)."""

    def __init__(self, path: Path, fd: int, entries: list[Entry]) -> None:
        self.path = path
        self._fd = fd
        self.recovered = entries  # read back at open, in order
        self._queue: list[bytes] = []
        self._flushed: asyncio.Future[None] | None = None  # the group waiting for a flush
        self._lock = asyncio.Lock()  # one write/fsync/truncate at a time
        self.fsyncs = 0  # flushes done (each one fsync), for the benchmark and the logs

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        """Open (creating) the journal, take its lock and read back the events it holds.

        Raises:
            JournalError: the file cannot be opened, or another process holds it.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise JournalError(f"{path}: cannot open the outage journal ({e})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise JournalError(f"{path}: the outage journal is in use by another process") from e
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        entries, end = decode_all(data)
        if end < size:
            log.warning("%s: cutting %d bytes of a torn record at the end", path, size - end)
            os.ftruncate(fd, end)
            os.fsync(fd)
        _fsync_dir(path.parent)
        if entries:
            log.info("%s: %d view events to replay", path, len(entries))
        return cls(path, fd, entries)

    async def append(self, entry: Entry) -> None:
        """Write ``entry`` and return once an ``fsync`` covers it (group commit)."""
        self._queue.append(encode(entry))
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(self._flushed)

    async def _flush(self) -> None:
        async with self._lock:  # a truncate or the previous group's fsync may be running
            done, self._flushed = self._flushed, None
            data, self._queue = b"".join(self._queue), []
            assert done is not None
            try:
                await anyio.to_thread.run_sync(self._write, data)
            except OSError as e:
                done.set_exception(e)
                done.exception()  # retrieved: the appenders see it, asyncio must not log it
            else:
                done.set_result(None)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.fsyncs += 1

    async def truncate_if(self, nothing_pending: Callable[[], bool]) -> bool:
        """Empty the journal when ``nothing_pending()`` holds; True if it did.

        Checked under the write lock, so no group is half written meanwhile. Callers keep an
        event pending from before its append until it reached Redis, so an empty pending set
        means every journaled event is in Redis.
        """
        async with self._lock:
            if not nothing_pending() or self._queue:
                return False
            if os.fstat(self._fd).st_size == 0:
                return True
            await anyio.to_thread.run_sync(self._truncate)
            log.info("%s: every journaled view event is in Redis; truncated", self.path)
            return True

    def _truncate(self) -> None:
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)  # releases the flock


def _fsync_dir(folder: Path) -> None:
    # A new file's directory entry is durable only once its folder is fsync'd.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
