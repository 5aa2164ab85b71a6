"""A minimal HTTP/1.1 keep-alive client for load generators (bench only).

httpx costs the generator about a millisecond of CPU per request, and its connection pool
grows costlier with every open connection; at a few hundred requests per second on one core
a hiccup makes the generator fall behind, open more connections and fall further behind, and
its own delay then shows in every latency it reports. This client does only what the benches
need: ``POST`` a prepared body on a reused connection (a new one when none is idle), read the
status line, the headers and a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from urllib.parse import urlsplit

# A connection idle this long is closed instead of reused: uvicorn closes keep-alive
# connections after 5 s idle (its default ``timeout_keep_alive``), and a request written to a
# connection the server is closing fails with no answer (counted as an error by the benches).
MAX_IDLE_S = 4.0


class RawClient:
    """Keep-alive connections to one ``http://host:port``; `post` returns (status, headers)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        # (reader, writer, when it became idle: time.monotonic())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for writer in self._open:
            writer.close()
        self._open.clear()
        self._idle.clear()

    async def post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str]]:
        """Send ``body`` and read the whole answer. Raises OSError or
        `asyncio.IncompleteReadError` when the connection fails (it is not reused)."""
        reader, writer = await self._connection()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\n{head}"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            status_line = await reader.readuntil(b"\r\n")
            answer: dict[str, str] = {}
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                key, _, value = line.decode("latin-1").partition(":")
                answer[key.strip().lower()] = value.strip()
            await reader.readexactly(int(answer.get("content-length", "0")))
        except BaseException:
            writer.close()
            self._open.discard(writer)
            raise
        if answer.get("connection", "").lower() == "close":
            writer.close()
            self._open.discard(writer)
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return int(status_line.split(b" ", 2)[1]), answer

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The most recently idle connection, unless it has been idle for ``MAX_IDLE_S`` or
        more (then every idle connection is older: all are closed); else a new one."""
        if self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < MAX_IDLE_S:
                return reader, writer
            for _, stale, _ in [*self._idle, (reader, writer, since)]:
                stale.close()
                self._open.discard(stale)
            self._idle.clear()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer
