"""Fault drills against the running docker-compose stack (``make stack-up`` first).

    python deploy/drills.py a          # docker kill the Redis container mid-load, start it again
    python deploy/drills.py b          # restart segint-1, then segint-2, under load
    python deploy/drills.py c --rate R # 2x the saturation rate R/2 for 30 s: what clients see
    python deploy/drills.py cluster    # kill one Redis Cluster master (STACK_PROFILE=cluster)

Each drill runs locust's mixed traffic (``deploy/stack.sh load``: 80% /score, 15%
/events/view, 5% /thumbnail) for the whole drill and, next to it, a tracker that sends view
events for its own users (ids no real user has), ``--events-rate`` per second, and keeps every
event the service acknowledged (HTTP 200). After the fault it reads each tracked user's
``history_length`` back through ``/score`` (waiting up to ``--settle-s`` for the replicas to
replay what they kept during an outage): an acknowledged event missing from the history is
lost. Failed requests are locust's (whole run, warm-up included) plus the tracker's.

Run it through ``deploy/stack.sh drill <name>``, which sets SEGINT_API_KEY and LB_PORT.
Writes ``reports/drills/<drill>.json`` and exits 1 when drill a or b saw a failed request or a
lost event (c and cluster report; losing events on a master kill is what asynchronous
replication allows, and the report measures it). Environment: LB_PORT (18080), as for
deploy/stack.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "segint")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
USER_BASE = 2_000_000_000  # tracked users: far above KuaiRand's ids, so no real user's history
EVENTS_PER_USER = 10  # below every model's history length, so nothing is trimmed
API_HEADERS = (
    {"X-API-Key": os.environ["SEGINT_API_KEY"]} if os.environ.get("SEGINT_API_KEY") else {}
)


def lb_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('LB_PORT', '18080')}"


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def container(service: str) -> str:
    """The id of the compose service's (one) container."""
    ids = docker(
        "ps",
        "-aq",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).split()
    if len(ids) != 1:
        raise RuntimeError(f"expected one container of service {service}, found {len(ids)}")
    return ids[0]


def health(cid: str) -> str:
    return docker(
        "inspect",
        "-f",
        "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
        cid,
    )


def wait_for(what: str, ok: Any, timeout_s: float = 120.0) -> float:
    """Polls ``ok()`` every 0.2 s; returns the seconds it took."""
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


@dataclass
class Tracker:
    """View events for tracked users; remembers which were acknowledged."""

    rate: float
    acked: dict[int, int] = field(default_factory=dict)  # user -> events acknowledged
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    degraded: int = 0  # acknowledged while the service said its cache was degraded
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, client: httpx.AsyncClient) -> None:
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.monotonic()
        while not self.stop.is_set():
            i = self.sent
            self.sent += 1
            task = asyncio.create_task(self._send(client, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, t0 + self.sent / self.rate - time.monotonic()))
        await asyncio.gather(*tasks)

    async def _send(self, client: httpx.AsyncClient, i: int) -> None:
        user = USER_BASE + i // EVENTS_PER_USER
        body = {
            "user_id": user,
            "video_id": 1 + i % EVENTS_PER_USER,
            "duration_ms": 12_000,
            "play_time_ms": 4_000,
            "time_ms": 1_700_000_000_000 + i,
        }
        try:
            r = await client.post("/events/view", json=body, headers=API_HEADERS)
        except httpx.HTTPError as e:
            self.failures.append(f"event {i}: {type(e).__name__}: {e}")
            return
        if r.status_code != 200:
            self.failures.append(f"event {i}: HTTP {r.status_code} {r.text[:200]}")
            return
        self.acked[user] = self.acked.get(user, 0) + 1
        self.degraded += bool(r.json().get("cache_degraded"))

    async def lost(self, client: httpx.AsyncClient, settle_s: float) -> dict[int, int]:
        """Acknowledged events missing from each user's history, after up to ``settle_s`` of
        waiting for replays; {user: missing} of the users still missing some."""
        deadline = time.monotonic() + settle_s
        while True:
            missing = {}
            for user, n in sorted(self.acked.items()):
                body = {"user_id": user, "candidates": [{"video_id": 1, "duration_ms": 12_000}]}
                r = await client.post("/score", json=body)
                r.raise_for_status()
                got = int(r.json()["history_length"])
                if got < n:
                    missing[user] = n - got
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(1.0)


def start_load(name: str, rate: float, duration_s: int) -> tuple[subprocess.Popen[bytes], Path]:
    # Under reports/load/: the only folder of the host the locust container writes to.
    report = Path("reports/load") / f"drill-{name}"
    env = os.environ | {
        "RATE": f"{rate:g}",
        "DURATION": f"{duration_s}s",
        "LOAD_REPORT": str(report),
    }
    log = (ROOT / "reports" / "drills" / f"{name}_load.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "deploy/stack.sh", "load"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return proc, ROOT / f"{report}_summary.json"


def drill_redis(args: argparse.Namespace, events: list[dict[str, Any]]) -> None:
    """(a) docker kill the Redis container at --fault-at, docker start it --down-s later."""
    cid = container("redis")
    time.sleep(args.fault_at)
    docker("kill", cid)
    events.append({"t": "redis killed", "state": health(cid)})
    time.sleep(args.down_s)
    state = health(cid)
    if not state.startswith("running"):
        docker("start", cid)
    events.append({"t": "redis started", "was": state})
    took = wait_for("redis healthy", lambda: health(cid) == "running/healthy")
    events.append({"t": "redis healthy", "after_s": round(took, 1)})


def drill_restart(args: argparse.Namespace, events: list[dict[str, Any]]) -> None:
    """(b) restart segint-1, wait until healthy and back in HAProxy, then segint-2."""
    time.sleep(args.fault_at)
    for service in ("segint-1", "segint-2"):
        cid = container(service)
        t0 = time.monotonic()
        docker("restart", "-t", "20", cid)
        wait_for(f"{service} healthy", lambda cid=cid: health(cid) == "running/healthy")
        # HAProxy takes a replica back after 2 passing checks, 2 s apart.
        time.sleep(6)
        events.append({"t": f"{service} restarted", "took_s": round(time.monotonic() - t0, 1)})


def cluster_nodes(cid: str) -> list[list[str]]:
    out = docker("exec", cid, "redis-cli", "cluster", "nodes")
    return [line.split() for line in out.splitlines() if line.strip()]


def drill_cluster(args: argparse.Namespace, events: list[dict[str, Any]]) -> None:
    """Kill the master serving a tracked user's slot; time until its replica took over."""
    nodes = {f"redis-node-{i}": container(f"redis-node-{i}") for i in range(1, 7)}
    ips = {
        docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c): n
        for n, c in nodes.items()
    }
    time.sleep(args.fault_at)
    table = cluster_nodes(nodes["redis-node-1"])
    masters = [r for r in table if "master" in r[2] and "fail" not in r[2]]
    victim_id, victim_addr = masters[0][0], masters[0][1].split(":")[0]
    victim = ips[victim_addr]
    replica = [r for r in table if r[3] == victim_id]
    watcher = next(c for n, c in nodes.items() if n != victim)
    docker("kill", nodes[victim])
    t0 = time.monotonic()
    events.append({"t": "master killed", "node": victim, "replicas": len(replica)})

    def promoted() -> bool:
        rows = cluster_nodes(watcher)
        return any(
            r[0] == replica[0][0] and "master" in r[2] for r in rows
        ) and "cluster_state:ok" in docker("exec", watcher, "redis-cli", "cluster", "info")

    took = wait_for("replica promoted", promoted, timeout_s=60)
    events.append({"t": "replica promoted, cluster ok", "failover_s": round(took, 2)})
    del t0


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    (ROOT / "reports" / "drills").mkdir(parents=True, exist_ok=True)
    load, summary_path = start_load(args.drill, args.rate, args.duration)
    tracker = Tracker(args.events_rate)
    events: list[dict[str, Any]] = []
    fault = {"a": drill_redis, "b": drill_restart, "cluster": drill_cluster}.get(args.drill)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=lb_url(), timeout=30, limits=limits) as client:
        t0 = time.monotonic()
        track = asyncio.create_task(tracker.run(client))
        if fault is not None:
            await asyncio.to_thread(fault, args, events)
        await asyncio.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        tracker.stop.set()
        await track
        load_rc = await asyncio.to_thread(load.wait)
        lost = await tracker.lost(client, args.settle_s)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    events_acked = sum(tracker.acked.values())
    return {
        "drill": args.drill,
        "rate": args.rate,
        "duration_s": args.duration,
        "events": events,
        "load_exit_code": load_rc,
        "load_requests": summary.get("whole_run_requests"),
        "load_failures": summary.get("whole_run_failures"),
        "load_achieved_rps": summary.get("achieved_rps"),
        "load_p50_ms": summary.get("p50_ms"),
        "load_p99_ms": summary.get("p99_ms"),
        "load_per_route": summary.get("per_route"),
        "tracked_events_sent": tracker.sent,
        "tracked_events_acked": events_acked,
        "tracked_events_acked_degraded": tracker.degraded,
        "tracked_failures": len(tracker.failures),
        "tracked_failure_samples": tracker.failures[:5],
        "events_lost": sum(lost.values()),
        "users_missing_events": len(lost),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("drill", choices=["a", "b", "c", "cluster"])
    p.add_argument("--rate", type=float, default=None, help="locust req/s (default 10; c: 2x sat.)")
    p.add_argument("--duration", type=int, default=None, help="seconds (default 60; c: 30)")
    p.add_argument("--fault-at", type=float, default=15.0, help="seconds into the load")
    p.add_argument("--down-s", type=float, default=15.0, help="drill a: seconds Redis stays down")
    p.add_argument("--events-rate", type=float, default=5.0, help="tracked view events per s")
    p.add_argument("--settle-s", type=float, default=60.0, help="wait for replays up to this")
    args = p.parse_args(argv)
    if args.drill == "c" and args.rate is None:
        p.error("drill c needs --rate (twice the saturation rate)")
    args.rate = args.rate if args.rate is not None else 10.0
    args.duration = args.duration or (30 if args.drill == "c" else 60)
    report = asyncio.run(drive(args))
    out = ROOT / "reports" / "drills" / f"{args.drill}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    failed = (report["load_failures"] or 0) + report["tracked_failures"]
    sys.stdout.write(
        f"drill {args.drill}: requests failed {failed} (locust {report['load_failures']} of "
        f"{report['load_requests']}, tracker {report['tracked_failures']} of "
        f"{report['tracked_events_sent']}); events acknowledged {report['tracked_events_acked']}"
        f" ({report['tracked_events_acked_degraded']} while degraded), lost "
        f"{report['events_lost']}; {out}\n"
    )
    if args.drill in ("a", "b"):
        bad = failed or report["events_lost"] or report["load_failures"] is None
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
