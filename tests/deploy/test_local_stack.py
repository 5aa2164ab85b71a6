"""The local stack (deploy/local-stack.sh) and a 10-second load smoke test through it.

Real processes: redis-server with AOF, two uvicorn replicas of the service on the tiny
exported model, HAProxy in front; the load comes from `make load` (locust at a fixed arrival
rate). HAProxy is installed from Debian's packages by the script when missing (as root).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.deploy.stack import SCRIPT, LocalStack
from tests.paths import ROOT


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("zombie")


def served_by_replica(stack: LocalStack) -> dict[str, int]:
    """Requests HAProxy sent to each replica so far (its stats CSV, column stot)."""
    text = httpx.get(f"http://127.0.0.1:{stack.stats_port}/stats;csv", timeout=5).text
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        r["svname"]: int(r["stot"])
        for r in rows
        if r["pxname"] == "replicas" and r["svname"].startswith("replica")
    }


@pytest.mark.slow
def test_load_smoke_through_the_local_stack(tmp_path: Path, self_artifact: Path) -> None:
    """`up` starts redis, two replicas and HAProxy and waits until healthy; a 10 s load at
    10 req/s (`make load`) gets no error response, hits every route and both replicas; `down`
    stops every process it started."""
    stack = LocalStack(tmp_path / "stack", self_artifact)
    up = stack.run("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert stack.run("status").returncode == 0
        ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
        assert ready["ready"] and ready["cache"] == "redis" and ready["redis_reachable"]

        report = tmp_path / "reports" / "smoke"
        load = subprocess.run(
            [
                "make",
                "-o",
                ".venv/.installed",
                "load",
                "RATE=10",
                "DURATION=10s",
                f"LOAD_REPORT={report}",
                f"LOAD_HOST={stack.url}",
            ],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-3000:]
        summary = json.loads(Path(f"{report}_summary.json").read_text())
        assert summary["whole_run_failures"] == 0 and summary["failures"] == 0
        assert summary["whole_run_requests"] >= 50, summary  # 10 s at 10 req/s, minus ramp-up
        routes = summary["per_route"]
        assert routes["/score"]["requests"] > 0 and routes["/events/view"]["requests"] > 0
        assert Path(f"{report}.html").stat().st_size > 0
        assert Path(f"{report}_stats.csv").read_text().count("Aggregated") == 1
        assert all(n > 0 for n in served_by_replica(stack).values())
        assert len(served_by_replica(stack)) == 2
    finally:
        pids = stack.pids()
        down = stack.run("down")
    assert down.returncode == 0, down.stderr
    assert set(pids) == {"redis", "replica1", "replica2", "haproxy"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not list(stack.state_dir.glob("*.pid"))
    assert stack.run("status").returncode == 1


def test_local_stack_rejects_bad_usage(tmp_path: Path) -> None:
    """A wrong action or setting ends with exit code 2 and one line naming the problem."""
    env = os.environ | {"STACK_DIR": str(tmp_path)}
    bad = subprocess.run(
        ["bash", str(SCRIPT), "restart"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "local-stack: usage: deploy/local-stack.sh up|down|status"
    ]
    env["STACK_FSYNC"] = "sometimes"
    bad = subprocess.run(
        ["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "STACK_FSYNC" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_local_stack_needs_an_exported_model(tmp_path: Path) -> None:
    """Without a manifest at SEGINT_ARTIFACT_DIR `up` fails in one line saying what to do."""
    stack = LocalStack(tmp_path / "stack", tmp_path / "no-model")
    up = stack.run("up")
    assert up.returncode == 2 and len(up.stderr.splitlines()) == 1
    assert up.stderr.startswith("local-stack: no exported model at")
    assert not stack.pids()  # nothing was started
