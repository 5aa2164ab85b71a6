"""A real Redis Cluster for tests: six redis-server processes, three masters and three replicas,
joined by ``redis-cli --cluster create`` (about a second to start on this machine)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis


def cluster_port() -> int:
    """A free port p with p + 10000 free too (the cluster bus); Redis needs p <= 55535."""
    while True:
        port = random.randint(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


@dataclass
class LocalCluster:
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        """The service's setting: any one node, the client discovers the rest."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now."""
        out = []
        for port, proc in self.procs.items():
            if proc.poll() is None:
                role = self.node(port).info("replication")["role"]
                if role == "master":
                    out.append(port)
        return sorted(out)

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node reports cluster_state:ok."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [
                self.node(p).cluster("info").get("cluster_state")
                for p, proc in self.procs.items()
                if proc.poll() is None
            ]
            if states and all(s == "ok" for s in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok after {timeout_s}s: {states}")
            time.sleep(0.1)


@contextmanager
def local_cluster(tmp: Path, node_timeout_ms: int = 1000) -> Iterator[LocalCluster]:
    """Six cluster-enabled redis-servers on free loopback ports, 3 masters + 3 replicas."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server and cli, "redis-server and redis-cli are needed (apt-get install redis-server)"
    ports = [cluster_port() for _ in range(6)]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for port in ports:
            d = tmp / f"node-{port}"
            d.mkdir(parents=True)
            procs[port] = subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(d),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--appendonly",
                    "no",
                    "--save",
                    "",
                ],
                stdout=(d / "log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        for port in ports:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                        break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports]]
            + ["--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = LocalCluster(ports, procs)
        cluster.wait_ok()
        yield cluster
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
