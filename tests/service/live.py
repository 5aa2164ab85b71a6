"""Real processes for end-to-end tests: a uvicorn server running the app, a redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix on the test Redis; every key under it is deleted afterwards."""
    prefix = f"segint-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    log: Path  # the server's stderr
    pid: int = 0  # the uvicorn process (kill -9 drills)

    def log_text(self) -> str:
        return self.log.read_text()


@contextmanager
def uvicorn_server(
    env: dict[str, str],
    tmp: Path,
    timeout_s: float = 60.0,
    wrap: list[str] | None = None,
    factory: str = "service.app:create_app",
    args: tuple[str, ...] = (),
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """``uvicorn --factory service.app:create_app`` on a free port, ready when /readyz is 200.
    ``wrap`` prefixes the command (e.g. ``["taskset", "-c", "0"]``); ``factory`` replaces the
    app factory (the bench's traced app) and ``args`` are more uvicorn options; ``cwd``
    another checkout whose code to serve (``python -m`` imports from it first)."""
    port = free_port()
    log = tmp / f"uvicorn-{port}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                *(wrap or []),
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                *args,
            ],
            cwd=cwd,
            # fp32 unless a test says otherwise: the parity tests compare fp32 answers.
            env={
                **os.environ,
                "SEGINT_INTRA_OP_THREADS": "1",
                "SEGINT_SCORER_PRECISION": "fp32",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn not ready after {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(url, log, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisProcess:
    url: str
    proc: subprocess.Popen[bytes]


@contextmanager
def redis_process(port: int | None = None) -> Iterator[RedisProcess]:
    """A throwaway ``redis-server`` on ``port`` (default: a free one), no persistence,
    removed afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="segint-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5)
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield RedisProcess(url, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
