"""Load test of the segint service at a fixed arrival rate (locust, headless).

Traffic is shaped like a recommender calling the service, over real users and videos of the
bundled KuaiRand-Pure log: 80% ``POST /score`` for one user with 50-500 candidate videos, 15%
``POST /events/view`` (a real view replayed with the current time), 5% ``POST /thumbnail``.

Arrival rate: ``--rate R`` requests/s in total. The shape below starts ``ceil(R * I)`` users
(``I = --user-interval`` seconds, default 2) at R users/s, so their phases are spread evenly over
one interval, and each user paces itself with ``constant_throughput(R / users)``. As long as a
response takes less than ``I`` the offered load is exactly R requests/s whatever the latency
(open loop); past saturation latency exceeds ``I``, users fall behind, and the achieved rate in
the report drops below R, which is how saturation shows.

Run it through ``make load RATE=20 DURATION=30s`` (which also starts the local stack), or::

    locust -f deploy/load/locustfile.py --headless --host http://127.0.0.1:8080 --rate 20 \
        --run-time 30s --csv reports/load/rate20 --html reports/load/rate20.html

Besides locust's CSV and HTML reports it writes ``<csv prefix>_summary.json`` (offered and
achieved req/s, p50/p95/p99, errors over the whole run including warm-up, generator CPU), and
exits 1 when any request failed. Videos longer than the service accepts (the ``duration_ms``
maximum in its OpenAPI schema, i.e. the model's ``S_max`` slots) are not sent. Environment:
``LOAD_DATA`` (the KuaiRand log or its folder), ``SEGINT_API_KEY``.
"""

# locust's hooks are untyped; the rest of this file is checked.
# mypy: disable-error-code="untyped-decorator,no-untyped-call"
from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import os
import random
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.env import Environment

log = logging.getLogger("segint.load")

ROOT = Path(__file__).resolve().parents[2]
LOG_NAME = "log_standard_4_25_to_4_30_pure.csv"
# Where the KuaiRand-Pure log is looked for when LOAD_DATA is not set: the slice bundled in the
# repository, then the shared data folder beside it.
DEFAULT_LOGS = (
    ROOT / "data" / "kuairand_pure" / f"{LOG_NAME}.gz",
    ROOT / "data" / "kuairand_pure" / LOG_NAME,
    ROOT.parent / "shared" / "data" / "kuairand_pure" / LOG_NAME,
)
MIN_CANDIDATES, MAX_CANDIDATES = 50, 500
THUMBNAIL_K = 3
SEGMENT_MS = 5000


@dataclass(frozen=True)
class Catalog:
    """Users, videos and views sampled by the simulated clients."""

    users: list[int]
    videos: list[tuple[int, int]]  # (video_id, duration_ms), one per distinct video
    long_videos: list[tuple[int, int]]  # videos with at least THUMBNAIL_K segments
    views: list[tuple[int, int, int, int]]  # (user_id, video_id, duration_ms, play_time_ms)


def find_log() -> Path:
    """The KuaiRand log to sample from: LOAD_DATA (a file or folder) or the default places."""
    configured = os.environ.get("LOAD_DATA")
    if configured:
        path = Path(configured)
        if path.is_dir():
            found = sorted(path.glob("log_*.csv*"))
            if not found:
                raise FileNotFoundError(f"LOAD_DATA={path}: no log_*.csv[.gz] in that folder")
            return found[0]
        if not path.exists():
            raise FileNotFoundError(f"LOAD_DATA={path}: no such file")
        return path
    for path in DEFAULT_LOGS:
        if path.exists():
            return path
    raise FileNotFoundError(f"no KuaiRand log found; set LOAD_DATA (looked at {DEFAULT_LOGS})")


def read_views(path: Path) -> list[tuple[int, int, int, int]]:
    """(user_id, video_id, duration_ms, play_time_ms) of every view with positive times.

    Args:
        path: a KuaiRand standard log (``.csv`` or ``.csv.gz``).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = (
            (int(r["user_id"]), int(r["video_id"]), int(r["duration_ms"]), int(r["play_time_ms"]))
            for r in csv.DictReader(f)
        )
        return [v for v in rows if v[2] > 0 and v[3] > 0]


def build_catalog(views: list[tuple[int, int, int, int]], max_duration_ms: int) -> Catalog:
    """The users, videos and views whose video is at most ``max_duration_ms`` long."""
    kept = [v for v in views if v[2] <= max_duration_ms]
    if not kept:
        raise ValueError(f"no view with 0 < duration_ms <= {max_duration_ms}")
    videos: dict[int, int] = {}
    for _, video, duration, _ in kept:
        videos.setdefault(video, duration)
    pairs = sorted(videos.items())
    long_videos = [v for v in pairs if v[1] > (THUMBNAIL_K - 1) * SEGMENT_MS]
    return Catalog(sorted({v[0] for v in kept}), pairs, long_videos, kept)


def max_duration_ms(host: str) -> int:
    """The longest video the service accepts, from its OpenAPI schema (POST /events/view)."""
    with urllib.request.urlopen(f"{host.rstrip('/')}/openapi.json", timeout=10) as r:
        spec = json.load(r)
    schema = spec["paths"]["/events/view"]["post"]["requestBody"]["content"]["application/json"]
    schema = schema["schema"]
    while "$ref" in schema:  # "#/components/schemas/Name"
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return int(schema["properties"]["duration_ms"]["maximum"])


# Read once per process at import; trimmed to the service's limit when the test starts.
_VIEWS = read_views(find_log())
CATALOG = build_catalog(_VIEWS, max_duration_ms=2**62)
API_HEADERS = (
    {"X-API-Key": os.environ["SEGINT_API_KEY"]} if os.environ.get("SEGINT_API_KEY") else {}
)


def options(environment: Environment) -> Any:
    """The parsed command line (always set when locust runs this file)."""
    if environment.parsed_options is None:
        raise RuntimeError("run this file with the locust command")
    return environment.parsed_options


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=float, default=20.0, help="total requests per second")
    parser.add_argument(
        "--user-interval",
        type=float,
        default=2.0,
        help="seconds between two requests of one simulated user (the latency that still "
        "keeps the arrival rate fixed)",
    )


class SegintClient(FastHttpUser):
    """One simulated caller: mostly ranking calls, some view events and thumbnails."""

    def wait_time(self) -> float:
        opts = options(self.environment)
        users = FixedArrivalRate.users_for(opts.rate, opts.user_interval)
        # constant_throughput keeps its state on the user; one pacing function per user.
        if not hasattr(self, "_pace"):
            self._pace = constant_throughput(opts.rate / users)
        return float(self._pace(self))

    @task(80)
    def score(self) -> None:
        n = random.randint(MIN_CANDIDATES, MAX_CANDIDATES)
        candidates = [
            {"video_id": v, "duration_ms": d} for v, d in random.sample(CATALOG.videos, n)
        ]
        body = {"user_id": random.choice(CATALOG.users), "candidates": candidates}
        self.client.post("/score", json=body, name="/score")

    @task(15)
    def view_event(self) -> None:
        user, video, duration, play = random.choice(CATALOG.views)
        body = {
            "user_id": user,
            "video_id": video,
            "duration_ms": duration,
            "play_time_ms": play,
            "time_ms": int(time.time() * 1000),
        }
        self.client.post("/events/view", json=body, headers=API_HEADERS, name="/events/view")

    @task(5)
    def thumbnail(self) -> None:
        video, duration = random.choice(CATALOG.long_videos)
        body = {
            "user_id": random.choice(CATALOG.users),
            "video_id": video,
            "duration_ms": duration,
            "k": THUMBNAIL_K,
            "min_gap_segments": 1,
        }
        self.client.post("/thumbnail", json=body, name="/thumbnail")


class FixedArrivalRate(LoadTestShape):
    """Holds ``ceil(rate * user_interval)`` users, spawned at ``rate`` users/s, for --run-time."""

    use_common_options = True

    @staticmethod
    def users_for(rate: float, interval: float) -> int:
        if rate <= 0 or interval <= 0:
            raise ValueError(f"--rate and --user-interval must be > 0, got {rate}, {interval}")
        return max(1, math.ceil(rate * interval))

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        opts = options(self.runner.environment)
        elapsed: float = self.get_run_time()
        if opts.run_time and elapsed >= opts.run_time:
            return None
        return self.users_for(opts.rate, opts.user_interval), opts.rate


# Counters over the whole run (--reset-stats drops the warm-up from locust's statistics, but
# an error during warm-up must still fail the run), and the clock of the measured window.
_RUN: dict[str, Any] = {
    "requests": 0,
    "failures": 0,
    "cpu": os.times(),  # process CPU times at test start: the generator's own CPU share
    "started": time.monotonic(),
    "measured_from": time.monotonic(),  # test start, or the stats reset after warm-up
    "stopped": None,
}


@events.request.add_listener
def _count(exception: BaseException | None = None, **_: Any) -> None:
    _RUN["requests"] += 1
    _RUN["failures"] += exception is not None


@events.test_start.add_listener
def _started(environment: Environment, **_: Any) -> None:
    global CATALOG
    if environment.host:
        limit = max_duration_ms(environment.host)
        CATALOG = build_catalog(_VIEWS, limit)
        log.info(
            "catalog: %d users, %d videos up to %d ms",
            len(CATALOG.users),
            len(CATALOG.videos),
            limit,
        )
    now = time.monotonic()
    _RUN.update(cpu=os.times(), started=now, measured_from=now)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    def warmed_up(**_: Any) -> None:
        if environment.reset_stats:  # locust has just reset its statistics
            _RUN["measured_from"] = time.monotonic()

    environment.events.spawning_complete.add_listener(warmed_up)


@events.test_stop.add_listener
def _stopped(**_: Any) -> None:
    _RUN["stopped"] = time.monotonic()


def _route_summary(s: Any, window_s: float) -> dict[str, Any]:
    return {
        "requests": s.num_requests,
        "failures": s.num_failures,
        "achieved_rps": round(s.num_requests / window_s, 2),
        "p50_ms": s.get_response_time_percentile(0.50),
        "p95_ms": s.get_response_time_percentile(0.95),
        "p99_ms": s.get_response_time_percentile(0.99),
        "max_ms": round(s.max_response_time, 1),
    }


@events.quitting.add_listener
def _summarise(environment: Environment, **_: Any) -> None:
    """Writes <csv prefix>_summary.json and sets the exit code (1 on any failure)."""
    opts = options(environment)
    stopped = _RUN["stopped"] or time.monotonic()
    window = max(stopped - _RUN["measured_from"], 1e-9)
    cpu0, cpu1 = _RUN["cpu"], os.times()
    cpu_s = cpu1.user - cpu0.user + cpu1.system - cpu0.system
    summary = {
        "host": environment.host,
        "offered_rps": opts.rate,
        "users": FixedArrivalRate.users_for(opts.rate, opts.user_interval),
        "measured_s": round(window, 2),
        **_route_summary(environment.stats.total, window),
        "whole_run_requests": _RUN["requests"],
        "whole_run_failures": _RUN["failures"],
        # Share of one core the generator used; it shares the machine with the servers.
        "generator_cpu": round(cpu_s / max(stopped - _RUN["started"], 1e-9), 3),
        "per_route": {
            name: _route_summary(s, window)
            for (name, _method), s in sorted(environment.stats.entries.items())
        },
    }
    log.info("load summary: %s", json.dumps({k: v for k, v in summary.items() if k != "per_route"}))
    if opts.csv_prefix:
        Path(f"{opts.csv_prefix}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if _RUN["failures"]:
        environment.process_exit_code = 1
