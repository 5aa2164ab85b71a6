"""Load shedding at twice the saturation rate: accepted latency and how fast the rest is shed.

1. A server with shedding off (a queue of 100,000, a deadline of an hour; otherwise the
   service defaults): its unloaded p50/p99 (sequential ``POST /score`` requests, 1 user x
   ``--candidates`` candidates) and its saturation, the throughput of a closed loop of
   ``--concurrency`` clients. The deadline is ``--deadline-x`` x its unloaded p99 (or
   ``--deadline-ms``), never anything measured under load.
2. One shedding server per ``--variants`` entry (``defaults``, or ``field=value,...``
   overrides of `Settings`), all started at once, each with its own unloaded p50/p99. Each
   server runs in a session of its own (``setsid``: its own scheduling group, as a container
   has its own cgroup); with two or more cores the servers are pinned to core 0 (one core, as
   each deployed replica has) and the load generator to core 1 (``--no-pin`` to let them
   float).
3. ``--rounds`` rounds; in each, every variant gets an open loop at ``--factor`` (2) x the
   saturation rate for ``--duration`` s, in alternating order (ABBA...), so drift in the
   machine's load falls on all of them alike. Request i is sent at ``t0 + i / rate`` whatever
   the server does and its latency counts from that time (no coordinated omission). Per round:
   accepted p50/p99, shed share and p50/p99, the server's CPU per request (event-loop thread
   and other threads, from /proc) and its event-loop lag (``segint_event_loop_lag_seconds``).
   Pooled over the rounds: the same, and the targets. Last, once: the no-shedding server.
   The generator is `bench.rawhttp` (``--client httpx``: rounds 1 and 2's, which falls behind
   at a few hundred req/s); with ``--trace`` the servers stamp each request
   (`bench.shed_trace`) and each shed answer's time is split into the generator's lateness,
   the way to the app, the app, and the way back.

Targets (issue 15): accepted p99 within 3x the unloaded p99; shed answers under 10 ms.
Run: ``.venv/bin/python bench/bench_shedding.py`` (~3 min; the first run exports the base
model). Writes ``reports/bench/shedding.json``. The machine's load average is recorded beside
the figures: on shared cores the other processes' work shows in every number"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import base_artifact  # noqa: E402
from bench.rawhttp import RawClient  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.live import uvicorn_server  # noqa: E402


def bodies(artifact: Path, users: int, candidates: int, seed: int = 0) -> list[bytes]:
    manifest = Manifest.read(artifact)
    vids = np.load(artifact / manifest.vocab_videos)
    uids = np.load(artifact / manifest.vocab_users)
    rng = np.random.default_rng(seed)
    out = []
    for u in rng.choice(uids, users, replace=False):
        c = [
            {"video_id": int(v), "duration_ms": int(d)}
            for v, d in zip(
                rng.choice(vids, candidates, replace=False),
                rng.integers(3000, manifest.max_duration_ms, candidates),
                strict=True,
            )
        ]
        out.append(json.dumps({"user_id": int(u), "candidates": c}).encode())
    return out


def unloaded(url: str, reqs: list[bytes], n: int) -> dict[str, float]:
    lat = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for b in reqs:  # every user's state cached first
            client.post("/score", content=b, headers={"content-type": "application/json"})
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post("/score", content=reqs[i % len(reqs)], headers=_JSON)
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
    ms = np.array(lat) * 1e3
    return {
        "requests": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "sequential_rps": float(1e3 / ms.mean()),
    }


_JSON = {"content-type": "application/json"}


async def closed_loop(url: str, reqs: list[bytes], concurrency: int, duration: float) -> float:
    """Requests per second answered by ``concurrency`` clients that each send the next request
    as soon as the previous one is answered: the server's saturation throughput."""
    loop = asyncio.get_running_loop()
    count = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        end = loop.time() + duration

        async def worker(k: int) -> None:
            nonlocal count
            i = k
            while loop.time() < end:
                r = await client.post("/score", content=reqs[i % len(reqs)], headers=_JSON)
                r.raise_for_status()
                count += 1
                i += concurrency

        t0 = loop.time()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return count / (loop.time() - t0)


async def open_loop(
    url: str,
    reqs: list[bytes],
    rate: float,
    duration: float,
    stamps: list[Any] | None = None,
    client_kind: str = "raw",
) -> tuple[dict[str, Any], list[tuple[int, float, float]]]:
    """``rate`` req/s for ``duration`` s, each sent on schedule whatever the server does; the
    run's figures and every request's (status or -1, latency s from its scheduled time).
    ``stamps``: when given, each request carries ``x-bench-id`` and gets (id, status,
    scheduled, sent, answered) appended, on the event loop's clock (``time.monotonic``).
    ``client_kind``: ``raw`` (`bench.rawhttp`) or ``httpx`` (rounds 1 and 2's generator)."""
    n = max(1, int(rate * duration))
    loop = asyncio.get_running_loop()
    done: list[tuple[int, float, float]] = []
    late: list[float] = []  # how late the generator itself sent each request (s)
    retry_after: set[str] = set()
    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=2048)
    cpu0 = time.process_time()
    client: Any = (
        RawClient(url)
        if client_kind == "raw"
        else httpx.AsyncClient(base_url=url, timeout=120, limits=limits)
    )
    async with client:
        start = loop.time() + 0.2

        async def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            if client_kind == "raw":
                return await client.post("/score", body, headers)  # type: ignore[no-any-return]
            r = await client.post("/score", content=body, headers=headers)
            return r.status_code, r.headers

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            sent = loop.time()
            late.append(sent - scheduled)
            headers = _JSON if stamps is None else _JSON | {"x-bench-id": str(i)}
            try:
                status, answer = await post(reqs[i % len(reqs)], headers)
                if status == 503:
                    retry_after.add(answer.get("retry-after", "missing"))
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError):
                status = -1
            answered = loop.time()
            done.append((status, answered - scheduled, answered - sent))
            if stamps is not None:
                stamps.append((i, status, scheduled, sent, answered))

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = loop.time() - start
    out = summarize(done, rate, elapsed) | {
        "retry_after_values": sorted(retry_after),
        # the load generator's CPU time / wall time: near 1.0 on its own core means the
        # client, not the server, may be what delays requests
        "client_cpu_share": (time.process_time() - cpu0) / elapsed,
        # the generator's own lateness in sending, included in every latency above
        "client_send_late_p99_ms": float(np.percentile(late, 99)) * 1e3,
    }
    return out, done


def summarize(done: list[tuple[int, float, float]], rate: float, elapsed: float) -> dict[str, Any]:
    """Accepted and shed latency percentiles of (status, latency s from the schedule, latency
    s from the send) triples. From the schedule is the headline (no coordinated omission);
    from the send leaves out the generator's own lateness (``client_send_late``)."""
    st = np.array([d[0] for d in done])
    lat = np.array([d[1] for d in done]) * 1e3
    ok, shed = lat[st == 200], lat[st == 503]
    from_send = np.array([d[2] for d in done]) * 1e3

    def pct(a: np.ndarray, q: float) -> float | None:
        return float(np.percentile(a, q)) if len(a) else None

    return {
        "offered_rps": rate,
        "requests": len(done),
        "accepted": len(ok),
        "accepted_rps": len(ok) / elapsed,
        "shed": len(shed),
        "errors": int(((st != 200) & (st != 503)).sum()),
        "accepted_p50_ms": pct(ok, 50),
        "accepted_p99_ms": pct(ok, 99),
        "shed_p50_ms": pct(shed, 50),
        "shed_p99_ms": pct(shed, 99),
        "shed_max_ms": float(shed.max()) if len(shed) else None,
        "accepted_from_send_p99_ms": pct(from_send[st == 200], 99),
        "shed_from_send_p50_ms": pct(from_send[st == 503], 50),
        "shed_from_send_p99_ms": pct(from_send[st == 503], 99),
    }


def trace_breakdown(stamps: list[Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the shed answers' time went, joining the generator's ``stamps`` with the traced
    server's records (`bench.shed_trace`) on request id: ``late`` (the generator sent after
    the schedule), ``to_app`` (sent -> the app saw it: the client's write and the server's
    read, accept and HTTP parse), ``in_app`` (the app saw it -> its answer ended) and ``back``
    (-> the client had read it). p50/p99 ms of each over all shed answers, and the mean of
    each over the slow ones (over 10 ms, with how many of those were refused after parsing)."""
    by_id = {r["id"]: r for r in records if "end" in r}
    parts: dict[str, list[float]] = {"late": [], "to_app": [], "in_app": [], "back": []}
    slow: dict[str, list[float]] = {k: [] for k in parts}
    slow_routed = unmatched = 0
    for i, status, scheduled, sent, answered in stamps:
        r = by_id.get(i)
        if status != 503:
            continue
        if r is None:
            unmatched += 1
            continue
        row = {
            "late": sent - scheduled,
            "to_app": r["enter"] - sent,
            "in_app": r["end"] - r["enter"],
            "back": answered - r["end"],
        }
        for k, v in row.items():
            parts[k].append(v * 1e3)
        if answered - scheduled > 0.010:
            slow_routed += r["routed"]
            for k, v in row.items():
                slow[k].append(v * 1e3)
    out: dict[str, Any] = {"shed_traced": len(parts["late"]), "unmatched": unmatched}
    for k, v in parts.items():
        out[f"{k}_p50_ms"] = float(np.percentile(v, 50)) if v else None
        out[f"{k}_p99_ms"] = float(np.percentile(v, 99)) if v else None
    out["slow"] = len(slow["late"])
    out["slow_refused_after_parsing"] = slow_routed
    for k, v in slow.items():
        out[f"slow_{k}_mean_ms"] = float(np.mean(v)) if v else None
    return out


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by a process's main thread (the event loop) and by all its
    other threads (inference, ORT), from /proc; (nan, nan) where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    main = rest = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            if int(task.name) == pid:
                main += cpu
            else:
                rest += cpu
    except OSError:
        return float("nan"), float("nan")
    return main, rest


def listen_drops() -> float:
    """The host's TcpExt ListenDrops so far (SYNs or connections dropped because an accept
    queue was full; the client retries a SYN after about 1 s); nan where unreadable."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return float("nan")
    for keys, values in zip(lines, lines[1:], strict=False):
        if keys[0] == "TcpExt:" and values[0] == "TcpExt:" and "ListenDrops" in keys:
            return float(values[keys.index("ListenDrops")])
    return float("nan")


def loop_lag_buckets(url: str) -> dict[float, float]:
    """The server's cumulative event-loop lag histogram: upper bound (s) -> ticks at or
    under it (segint_event_loop_lag_seconds, one observation per 10 ms tick)."""
    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("segint_event_loop_lag_seconds_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def loop_lag_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Ticks during a run, the bucket bound (ms) under which 50% / 99% of them ran late, and
    the share more than 10 ms late."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts.get(float("inf"), 0.0)

    def bound(q: float) -> float | None:
        for le, c in counts.items():
            if total and c >= q * total:
                return le * 1e3
        return None

    return {
        "ticks": total,
        "p50_ms_at_most": bound(0.5),
        "p99_ms_at_most": bound(0.99),
        "over_10ms_share": (total - counts.get(0.01, 0.0)) / total if total else None,
    }


def shed_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("segint_shed_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def server_side_sheds(url: str) -> dict[str, float]:
    """Requests refused before routing (route "unmatched": the admission check) and the share
    the server answered within 10 ms, from segint_http_request_duration_seconds."""
    text = httpx.get(f"{url}/metrics").text
    counts = {}
    for line in text.splitlines():
        if line.startswith("segint_http_request_duration_seconds_bucket{") and (
            'route="unmatched"' in line and 'method="POST"' in line
        ):
            le = line.split('le="')[1].split('"')[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    total = counts.get("+Inf", 0.0)
    return {
        "refused_before_parsing": total,
        "server_within_10ms_share": counts.get("0.01", 0.0) / total if total else float("nan"),
    }


@dataclass
class Variant:
    """One shedding server of the comparison (see `variant`)."""

    env: dict[str, str]  # SEGINT_* overrides
    tree: Path  # the checkout whose code it serves
    client: str  # the generator's HTTP client: raw or httpx
    deadline_x: float | None  # its deadline / the no-shedding unloaded p99 (None: --deadline-x)


def variant(spec: str, client: str) -> Variant:
    """``defaults`` or ``field=value[,field=value...]``: `Settings` fields, and ``tree=DIR``
    (serve the code of another checkout), ``client=raw|httpx`` (this variant's generator,
    default ``client``), ``deadline_x=F`` (this variant's deadline, as --deadline-x)."""
    out = Variant({}, ROOT, client, None)
    for item in [] if spec == "defaults" else spec.split(","):
        field, sep, value = item.partition("=")
        if sep and field == "tree":
            out.tree = Path(value).resolve()
            if not (out.tree / "service" / "app.py").is_file():
                raise SystemExit(f"--variants: tree={value} holds no service/app.py")
        elif sep and field == "client":
            if value not in ("raw", "httpx"):
                raise SystemExit(f"--variants: client={value} is not raw or httpx")
            out.client = value
        elif sep and field == "deadline_x":
            out.deadline_x = float(value)
        elif not sep or field not in Settings.model_fields:
            raise SystemExit(f"--variants: {item!r} is not field=value of a Settings field")
        else:
            out.env[f"SEGINT_{field.upper()}"] = value
    return out


def main() -> int:
    defaults = Settings.model_fields
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, help="default: the untrained base model")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--factor", type=float, default=2.0, help="offered rate / saturation rate")
    p.add_argument(
        "--duration", type=float, default=8.0, help="seconds of open-loop load per round"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="open-loop runs per shedding variant, in alternating order (ABBA...)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["inference_nice=0", "defaults"],
        help="shedding servers compared side by side: 'defaults' (the service defaults) or "
        "field=value[,field=value] overrides of Settings fields; tree=DIR serves another "
        "checkout's code (e.g. a `git archive` of the base commit; with --trace it needs "
        "bench/shed_trace.py too); client=raw|httpx sets the variant's generator and "
        "deadline_x=F its deadline (as --deadline-x)",
    )
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop clients (saturation)")
    p.add_argument("--saturation-s", type=float, default=5.0, help="seconds of closed loop")
    p.add_argument(
        "--no-pin", action="store_true", help="do not pin servers (core 0) and generator (core 1)"
    )
    p.add_argument("--unloaded", type=int, default=200, help="sequential requests")
    p.add_argument("--queue-max", type=int, default=defaults["inference_queue_max"].default)
    p.add_argument(
        "--deadline-ms",
        type=float,
        help="request deadline; default: --deadline-x times the unloaded p99 measured on the "
        "no-shedding server (the service default is "
        f"{defaults['request_deadline_ms'].default:g} ms)",
    )
    p.add_argument("--deadline-x", type=float, default=1.0)
    p.add_argument("--ort-threads", type=int, default=1, help="SEGINT_INTRA_OP_THREADS")
    p.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="the open-loop generator's HTTP client: raw (bench/rawhttp.py) or httpx (rounds "
        "1 and 2; costlier per request, and it falls behind at a few hundred req/s)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="serve the shedding variants through bench.shed_trace and split each shed "
        "answer's time into generator / to the app / in the app / back (per round)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "shedding.json")
    args = p.parse_args()
    variants = {spec: variant(spec, args.client) for spec in args.variants}
    artifact = args.artifact or base_artifact()[0]
    reqs = bodies(artifact, args.users, args.candidates)
    base_env = {
        "SEGINT_ARTIFACT_DIR": str(artifact),
        "SEGINT_ORT_SPINNING": "false",
        "SEGINT_MODEL_WATCH_S": "0",
        # One ONNX Runtime thread, as in compose and k8s: the event loop (which answers the
        # shed requests) and the load generator keep a core instead of racing ORT's pool.
        "SEGINT_INTRA_OP_THREADS": str(args.ort_threads),
    }
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict[str, Any] = {"config": config | {"artifact": str(artifact)}, "rounds": []}
    tmp = ROOT / "reports" / "bench" / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    # Each server in a session of its own (setsid): its own scheduling group, as a container
    # has its own cgroup, so on a shared host it competes with the other groups as a whole,
    # and its threads' nice values weigh only against each other, not against the generator.
    wrap = ["setsid", *(["taskset", "-c", "0"] if pin else [])]
    if pin:
        os.sched_setaffinity(0, {1})
    report["pinned"] = pin
    with contextlib.ExitStack() as stack:
        # Shedding off, everything else the service defaults: the saturation rate and the
        # deadline come from this server, never from a loaded run.
        off = {"SEGINT_INFERENCE_QUEUE_MAX": "100000", "SEGINT_REQUEST_DEADLINE_MS": "3600000"}
        server = stack.enter_context(uvicorn_server(base_env | off, tmp, wrap=wrap))
        report["no_shedding"] = {"unloaded": unloaded(server.url, reqs, args.unloaded)}
        sat = asyncio.run(closed_loop(server.url, reqs, args.concurrency, args.saturation_s))
        rate = args.factor * sat
        deadline = args.deadline_ms or args.deadline_x * report["no_shedding"]["unloaded"]["p99_ms"]
        report |= {"saturation_rps": sat, "offered_rps": rate, "deadline_ms": deadline}
        print(f"saturation {sat:.0f} req/s; offering {rate:.0f}; deadline {deadline:.1f} ms")
        shed_env = {
            "SEGINT_INFERENCE_QUEUE_MAX": str(args.queue_max),
            "SEGINT_REQUEST_DEADLINE_MS": f"{deadline:.1f}",
        }
        servers = {}
        factory = "bench.shed_trace:create_app" if args.trace else "service.app:create_app"
        for name, v in variants.items():
            own = {}
            if v.deadline_x is not None:
                own_ms = v.deadline_x * report["no_shedding"]["unloaded"]["p99_ms"]
                own = {"SEGINT_REQUEST_DEADLINE_MS": f"{own_ms:.1f}"}
            env = base_env | shed_env | own | v.env
            servers[name] = stack.enter_context(
                uvicorn_server(env, tmp, wrap=wrap, factory=factory, cwd=v.tree)
            )
            report[name] = {
                "env": v.env,
                "tree": str(v.tree),
                "client": v.client,
                "deadline_ms": float(env["SEGINT_REQUEST_DEADLINE_MS"]),
                "unloaded": unloaded(servers[name].url, reqs, args.unloaded),
            }
            print(f"[{name}] unloaded {report[name]['unloaded']}", flush=True)
        # Every variant runs in every round, in alternating order: drift in the machine's load
        # falls on all of them alike, and the per-round rows show the spread.
        pooled: dict[str, list[tuple[int, float, float]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                load0 = os.getloadavg()[0]
                cpu0, lag0 = thread_cpu_s(servers[name].pid), loop_lag_buckets(servers[name].url)
                drops0 = listen_drops()
                stamps: list[Any] | None = [] if args.trace else None
                loaded, done = asyncio.run(
                    open_loop(
                        servers[name].url, reqs, rate, args.duration, stamps, variants[name].client
                    )
                )
                cpu1, lag1 = thread_cpu_s(servers[name].pid), loop_lag_buckets(servers[name].url)
                if stamps is not None:
                    records = httpx.get(f"{servers[name].url}/__trace", timeout=30).json()
                    loaded["trace"] = trace_breakdown(stamps, records)
                loaded |= {
                    "variant": name,
                    "round": r,
                    "loadavg_1m_before": load0,
                    # CPU ms per offered request: the event loop's, and the other threads'
                    "loop_cpu_ms_per_request": 1e3 * (cpu1[0] - cpu0[0]) / loaded["requests"],
                    "inference_cpu_ms_per_request": 1e3 * (cpu1[1] - cpu0[1]) / loaded["requests"],
                    "loop_lag": loop_lag_summary(lag0, lag1),
                    "listen_drops": listen_drops() - drops0,  # host-wide, during the round
                }
                report["rounds"].append(loaded)
                pooled[name] += done
                print(f"[{name} round {r}] {loaded}", flush=True)
        for name in variants:
            url = servers[name].url
            report[name]["loaded"] = summarize(pooled[name], rate, args.duration * args.rounds)
            report[name]["loaded"] |= {
                "shed_by_reason": shed_counts(url),
                "server_side": server_side_sheds(url),
            }
        # Last and once: without shedding the queue only grows, and draining it takes long.
        load0 = os.getloadavg()[0]
        loaded, _ = asyncio.run(
            open_loop(server.url, reqs, rate, args.duration, client_kind=args.client)
        )
        report["no_shedding"]["loaded"] = loaded | {"loadavg_1m_before": load0}
    report["targets"] = {
        name: {
            "accepted_p99_within_3x_unloaded_p99": (report[name]["loaded"]["accepted_p99_ms"] or 0)
            <= 3 * report[name]["unloaded"]["p99_ms"],
            "shed_p99_under_10_ms": (report[name]["loaded"]["shed_p99_ms"] or 0.0) < 10.0,
        }
        for name in variants
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report, list(variants))
    print(f"wrote {args.out}")
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def print_table(report: dict[str, Any], variants: list[str]) -> None:
    print(
        f"offered {report['offered_rps']:.0f} req/s (saturation {report['saturation_rps']:.0f}); "
        f"deadline {report['deadline_ms']:.1f} ms"
    )
    print(
        "| config | rounds | unloaded p99 ms | accepted req/s | accepted p50 / p99 ms "
        "| accepted p99 / unloaded p99 | shed % | shed p50 / p99 / max ms "
        "| from the send: accepted p99, shed p50 / p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in [*variants, "no_shedding"]:
        u, x = report[name]["unloaded"], report[name]["loaded"]
        ratio = (x["accepted_p99_ms"] or float("nan")) / u["p99_ms"]
        rounds = report["config"]["rounds"] if name != "no_shedding" else 1
        print(
            f"| {name} | {rounds} | {u['p99_ms']:.1f} | {x['accepted_rps']:.0f} "
            f"| {_f(x['accepted_p50_ms'])} / {_f(x['accepted_p99_ms'])} | {ratio:.1f}x "
            f"| {100 * x['shed'] / x['requests']:.0f} "
            f"| {_f(x['shed_p50_ms'])} / {_f(x['shed_p99_ms'])} / {_f(x['shed_max_ms'])} "
            f"| {_f(x['accepted_from_send_p99_ms'])}, {_f(x['shed_from_send_p50_ms'])} / "
            f"{_f(x['shed_from_send_p99_ms'])} | {x['errors']} |"
        )
    print("\nper round (same offered rate, alternating order):")
    print(
        "| round | config | load 1m | accepted p50 / p99 ms | shed % "
        "| shed p50 / p99 ms (from the send: p99) "
        "| server CPU ms per request: loop / other threads "
        "| loop lag p50 / p99 ms (bucket bound) | ticks > 10 ms late | client send late p99 ms "
        "| listen drops |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in report["rounds"]:
        lag = x["loop_lag"]
        print(
            f"| {x['round']} | {x['variant']} | {x['loadavg_1m_before']:.2f} "
            f"| {_f(x['accepted_p50_ms'])} / {_f(x['accepted_p99_ms'])} "
            f"| {100 * x['shed'] / x['requests']:.0f} "
            f"| {_f(x['shed_p50_ms'])} / {_f(x['shed_p99_ms'])} ({_f(x['shed_from_send_p99_ms'])}) "
            f"| {x['loop_cpu_ms_per_request']:.2f} / {x['inference_cpu_ms_per_request']:.2f} "
            f"| {_f(lag['p50_ms_at_most'])} / {_f(lag['p99_ms_at_most'])} "
            f"| {_pct(lag['over_10ms_share'])} | {x['client_send_late_p99_ms']:.1f} "
            f"| {x['listen_drops']:.0f} |"
        )
    traced = [x for x in report["rounds"] if "trace" in x]
    if traced:
        print("\nshed answers, where the time went (ms; slow: over 10 ms, mean of each part):")
        print(
            "| round | config | shed | late p50/p99 | to app p50/p99 | in app p50/p99 "
            "| back p50/p99 | slow (after parsing) | slow: late / to app / in app / back |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for x in traced:
            t = x["trace"]
            print(
                f"| {x['round']} | {x['variant']} | {t['shed_traced']} "
                + "".join(
                    f"| {_f(t[k + '_p50_ms'])} / {_f(t[k + '_p99_ms'])} "
                    for k in ("late", "to_app", "in_app", "back")
                )
                + f"| {t['slow']} ({t['slow_refused_after_parsing']}) | "
                + " / ".join(
                    _f(t[f"slow_{k}_mean_ms"]) for k in ("late", "to_app", "in_app", "back")
                )
                + " |"
            )
    for name in variants:
        side = report[name]["loaded"]["server_side"]
        print(
            f"[{name}] shed before parsing (middleware): {side['refused_before_parsing']:.0f} of "
            f"{report[name]['loaded']['shed']}; server answered "
            f"{side['server_within_10ms_share']:.0%} of those within 10 ms; "
            f"by reason {report[name]['loaded']['shed_by_reason']}; "
            f"targets {report['targets'][name]}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
