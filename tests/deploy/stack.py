"""Drive deploy/local-stack.sh from tests: a stack on free ports with its state in a temp dir."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.paths import ROOT

SCRIPT = ROOT / "deploy" / "local-stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalStack:
    state_dir: Path
    artifact_dir: Path
    lb_port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    app_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    redis_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def env(self) -> dict[str, str]:
        return os.environ | {
            "STACK_DIR": str(self.state_dir),
            "STACK_LB_PORT": str(self.lb_port),
            "STACK_STATS_PORT": str(self.stats_port),
            "STACK_APP_PORTS": f"{self.app_ports[0]} {self.app_ports[1]}",
            "STACK_REDIS_PORT": str(self.redis_port),
            "STACK_WAIT_S": "60",
            "SEGINT_ARTIFACT_DIR": str(self.artifact_dir),
        }

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), action],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in self.state_dir.glob("*.pid")}
