"""The benches' raw HTTP client reuses a keep-alive connection, but not one idle long enough
for the server to be closing it (uvicorn: 5 s), against a real local HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from bench import rawhttp


async def serve_and_post(gaps: list[float]) -> tuple[list[int], int]:
    """POST once per gap (sleeping the gap first); (statuses, connections the server saw)."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    statuses = []
    async with rawhttp.RawClient(f"http://127.0.0.1:{port}") as client:
        for gap in gaps:
            await asyncio.sleep(gap)
            status, _ = await client.post("/score", b"{}", {"content-type": "application/json"})
            statuses.append(status)
    server.close()
    await server.wait_closed()
    return statuses, connections


def test_reuses_a_fresh_connection_and_replaces_a_stale_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rawhttp, "MAX_IDLE_S", 0.2)
    # two quick posts share one connection; after 0.3 s idle a new one is opened
    statuses, connections = asyncio.run(serve_and_post([0.0, 0.0, 0.3, 0.0]))
    assert statuses == [200, 200, 200, 200]
    assert connections == 2
