"""deploy/stack.sh (`make stack-up`, `make stack-test`) without a Docker engine: it must fail
loudly, exit 1 with one line, and never skip. The stack itself is exercised by
`make stack-test` (deploy/drills.py), which needs the engine and root."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.paths import ROOT


def stack(*args: str, dockerd: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "DOCKER": "/bin/false",  # a client that never reaches an engine
        "DOCKERD": dockerd,
        "STACK_ENGINE_WAIT_S": "5",
    }
    return subprocess.run(
        ["bash", "deploy/stack.sh", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["up", "test"])
def test_stack_fails_loudly_when_no_engine_is_installed(command: str) -> None:
    done = stack(command, dockerd="/nonexistent/dockerd")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stack: no Docker engine"), done.stderr


def test_stack_fails_loudly_when_the_engine_does_not_start() -> None:
    """A dockerd that exits at once is reported as such, not waited on or skipped."""
    done = stack("up", dockerd="/bin/true")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("stack: dockerd exited"), done.stderr
