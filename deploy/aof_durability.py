"""Do view events survive a crash of Redis? An experiment against the local stack.

It starts its own local stack (deploy/local-stack.sh, fresh Redis state), runs the locust load
test against it in the background, and meanwhile sends a known set of view events through
the load balancer (users with ids far from real ones, each getting fewer events than the
model's history length, so every event must stay in that user's history). While events flow
it ``kill -9``s redis-server, keeps writing for ``--down-for`` seconds (the service answers
from its fallback and queues the events for replay), restarts Redis on the same AOF, and
finishes. Once both replicas report no pending events it kills and restarts Redis once more,
so the final state is read back from the append-only file alone, and checks that every event
the service acknowledged (HTTP 200) is in its user's cached history.

Why ``appendfsync always``: Redis fsyncs the AOF before it answers, so an acknowledged write
is on disk even if the machine dies. ``everysec`` usually survives a process kill (the data
is in the kernel's page cache), but it can lose ~1-2 s of acknowledged writes on power loss,
and on a process kill too when a slow fsync makes Redis postpone its write(2). ``off`` (no
AOF) is the control: it must lose events, which shows the check can fail.

    .venv/bin/python deploy/aof_durability.py --fsync always   # exit 0 iff no event is lost

Writes a JSON report (``--report``) and exits 1 when an acknowledged event is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

from service.cache import namespace, user_key  # noqa: E402
from service.history import decode_blob  # noqa: E402
from service.settings import get_settings  # noqa: E402

log = logging.getLogger("segint.aof")
FIRST_USER = 900_000_000  # synthetic users: no real traffic touches their keys


@dataclass
class Stack:
    """Ports and state folder of the experiment's own local stack."""

    state_dir: Path
    fsync: str
    artifact_dir: Path
    lb_port: int = field(default_factory=lambda: free_port())
    stats_port: int = field(default_factory=lambda: free_port())
    app_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    redis_port: int = field(default_factory=lambda: free_port())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def run(self, action: str) -> None:
        env = os.environ | {
            "STACK_DIR": str(self.state_dir),
            "STACK_FSYNC": self.fsync,
            "STACK_LB_PORT": str(self.lb_port),
            "STACK_STATS_PORT": str(self.stats_port),
            "STACK_APP_PORTS": f"{self.app_ports[0]} {self.app_ports[1]}",
            "STACK_REDIS_PORT": str(self.redis_port),
            "SEGINT_ARTIFACT_DIR": str(self.artifact_dir),
        }
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "local-stack.sh"), action], env=env, check=True
        )

    def kill_redis(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed beyond what Redis already did."""
        pid = int((self.state_dir / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid):
            time.sleep(0.01)

    def pending_events(self) -> float:
        """View events waiting for replay, summed over both replicas (their /metrics)."""
        total = 0.0
        for port in self.app_ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith("segint_pending_events "):
                    total += float(line.split()[1])
        return total


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Outcome:
    """One view event as the client saw it."""

    user_id: int
    video_id: int
    time_ms: int
    acked: bool = False
    degraded: bool = False
    phase: str = ""  # when it was acknowledged: before_kill, redis_down, after_restart


@dataclass
class Timeline:
    killed_at: float = float("inf")
    restarted_at: float = float("inf")

    def phase(self, t: float) -> str:
        if t < self.killed_at:
            return "before_kill"
        return "redis_down" if t < self.restarted_at else "after_restart"


async def send_events(
    url: str,
    events: list[Outcome],
    rate: float,
    writers: int,
    timeline: Timeline,
    api_key: str | None,
) -> None:
    """Posts each event once (retrying transport errors and 5xx: a client would), at ``rate``/s."""
    queue: asyncio.Queue[tuple[int, Outcome]] = asyncio.Queue()
    for item in enumerate(events):
        queue.put_nowait(item)
    headers = {"X-API-Key": api_key} if api_key else {}
    start = time.monotonic()

    async def writer(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, e = queue.get_nowait()
            # Pace on the event's index so the rate is fixed whatever the latency.
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            body = {"user_id": e.user_id, "video_id": e.video_id, "duration_ms": 30_000,
                    "play_time_ms": 12_000, "time_ms": e.time_ms}  # fmt: skip
            for attempt in range(5):
                try:
                    r = await client.post("/events/view", json=body, headers=headers)
                except httpx.TransportError as exc:
                    log.warning("event %s attempt %d: %s", e, attempt, exc)
                else:
                    if r.status_code == 200:
                        e.acked, e.degraded = True, bool(r.json()["cache_degraded"])
                        e.phase = timeline.phase(time.monotonic())
                        break
                    log.warning("event %s: HTTP %d %s", e, r.status_code, r.text[:200])
                    if r.status_code < 500:
                        break
                await asyncio.sleep(0.2)

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(*(writer(client) for _ in range(writers)))


def make_events(n: int, per_user: int, history_len: int, seed: int) -> list[Outcome]:
    """``n`` view events, ``per_user`` distinct (video, time) views per synthetic user, in a
    random order (a user's events are spread over the whole run)."""
    if per_user > history_len:
        raise SystemExit(
            f"--events-per-user {per_user} exceeds the model's history ({history_len})"
        )
    users = math.ceil(n / per_user)
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    events = [
        Outcome(FIRST_USER + u, rng.randrange(1, 10_000), t0 + 1000 * k)
        for k in range(per_user)
        for u in range(users)
    ]
    rng.shuffle(events)
    return events[:n]


def stored_views(stack: Stack, space: str, user_ids: list[int]) -> dict[int, set[tuple[int, int]]]:
    """(video_id, time_ms) of each user's history as Redis holds it."""
    client = redis.Redis(port=stack.redis_port, socket_timeout=10)
    blobs = cast(list[bytes | None], client.mget([user_key(space, u) for u in user_ids]))
    found: dict[int, set[tuple[int, int]]] = {}
    for user, blob in zip(user_ids, blobs, strict=True):
        found[user] = set()
        if blob is not None:
            h = decode_blob(blob, fingerprint=None).history
            found[user] = set(zip(h.video_ids.tolist(), h.time_ms.tolist(), strict=True))
    return found


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment; returns the report."""
    manifest = json.loads((args.artifact_dir / "manifest.json").read_text())
    keys = namespace(get_settings().key_prefix, manifest["model_version"])
    per_user = args.events_per_user or min(10, manifest["history_len"])
    n_events = round(args.event_rate * args.duration)
    events = make_events(n_events, per_user, manifest["history_len"], args.seed)
    stack = Stack(args.state_dir, args.fsync, args.artifact_dir)
    stack.run("down")
    shutil.rmtree(stack.state_dir / "redis", ignore_errors=True)  # a fresh AOF
    timeline = Timeline()
    locust = None
    try:
        stack.run("up")
        if args.load_rate > 0:
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "deploy" / "load" / "locustfile.py"),
                 "--headless", "--host", stack.url, "--rate", str(args.load_rate), "--run-time", f"{math.ceil(args.duration)}s",
                 "--only-summary", "--csv", str(args.locust_prefix)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip

        async def experiment() -> None:
            sender = asyncio.create_task(
                send_events(
                    stack.url, events, args.event_rate, args.writers, timeline, args.api_key
                )
            )
            await asyncio.sleep(args.kill_after)
            # Mark the kill before the signal, so no ack after it is counted as earlier.
            timeline.killed_at = time.monotonic()
            await asyncio.to_thread(stack.kill_redis)
            log.info("redis-server killed (SIGKILL); restarting in %.1fs", args.down_for)
            await asyncio.sleep(args.down_for)
            await asyncio.to_thread(stack.run, "up")  # restarts redis-server on the same AOF
            timeline.restarted_at = time.monotonic()
            await sender

        asyncio.run(experiment())
        wait_for(lambda: stack.pending_events() == 0, 60, "the replicas to replay pending events")
        locust_failures = None
        if locust is not None:
            _, err = locust.communicate(timeout=120)  # ends after --duration
            summary = Path(f"{args.locust_prefix}_summary.json")
            locust_failures = (
                json.loads(summary.read_text())["whole_run_failures"] if summary.exists() else None
            )
            if locust_failures is None:
                log.warning("locust wrote no summary: %s", err[-2000:])
        users = sorted({e.user_id for e in events})
        found_live = stored_views(stack, keys, users)  # after the first crash and replay
        # Crash once more: what is checked below comes from the append-only file alone.
        stack.kill_redis()
        stack.run("up")
        found = stored_views(stack, keys, users)
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        if not args.keep_running:
            stack.run("down")

    acked = [e for e in events if e.acked]
    lost = [e for e in acked if (e.video_id, e.time_ms) not in found[e.user_id]]
    lost_live = [e for e in acked if (e.video_id, e.time_ms) not in found_live[e.user_id]]
    phases = ("before_kill", "redis_down", "after_restart")
    return {
        "fsync": args.fsync,
        "events": len(events),
        "acked": len(acked),
        "not_acked": len(events) - len(acked),
        "acked_degraded": sum(e.degraded for e in acked),
        "acked_by_phase": {p: sum(e.phase == p for e in acked) for p in phases},
        # Acknowledged while the service could not write to Redis in time (journaled, replayed
        # later): under load this happens before the kill too, not only while Redis is down.
        "acked_degraded_by_phase": {
            p: sum(e.phase == p and e.degraded for e in acked) for p in phases
        },
        "lost": len(lost),
        "lost_by_phase": {p: sum(e.phase == p for e in lost) for p in phases},
        "lost_examples": [asdict(e) for e in lost[:5]],
        # The same check before the final crash (after the first crash and the replay).
        "lost_before_final_crash": len(lost_live),
        "redis_down_s": round(timeline.restarted_at - timeline.killed_at, 2),
        "load_rate": args.load_rate,
        "load_failures": locust_failures,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fsync", choices=["always", "everysec", "no", "off"], default="always",
                   help="appendfsync policy; off = no AOF (the control that must lose events)")  # fmt: skip
    p.add_argument(
        "--artifact-dir",
        type=Path,
        default=Path(os.environ.get("SEGINT_ARTIFACT_DIR", ROOT / "artifacts" / "default")),
    )
    p.add_argument("--state-dir", type=Path, default=ROOT / ".stack" / "aof")
    p.add_argument("--events-per-user", type=int, help="default: min(10, model history length)")
    p.add_argument("--event-rate", type=float, default=100.0, help="view events per second")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of writing (and load)")
    p.add_argument("--writers", type=int, default=8, help="concurrent event senders")
    p.add_argument("--load-rate", type=float, default=10.0, help="locust req/s alongside (0: none)")
    p.add_argument(
        "--kill-after", type=float, default=3.0, help="seconds of writes before the kill"
    )
    p.add_argument("--down-for", type=float, default=2.0, help="seconds Redis stays down")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key", default=os.environ.get("SEGINT_API_KEY"))
    p.add_argument("--report-dir", type=Path, default=ROOT / "reports" / "load",
                   help="writes aof_<fsync>.json and the locust reports aof_<fsync>_locust_*")  # fmt: skip
    p.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    if not (args.artifact_dir / "manifest.json").exists():
        sys.stderr.write(
            f"aof_durability: no exported model at {args.artifact_dir} (run `make serve` once)\n"
        )
        return 2
    args.report_dir.mkdir(parents=True, exist_ok=True)
    args.locust_prefix = args.report_dir / f"aof_{args.fsync}_locust"
    report = run(args)
    (args.report_dir / f"aof_{args.fsync}.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("report: %s", json.dumps(report))
    return 1 if report["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
