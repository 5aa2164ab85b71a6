"""Latency of the scoring service under open-loop load, and where a request's time goes.

What it measures, on this machine, with the base model (``configs/base.yaml``; untrained
weights: timing does not depend on their values) unless ``--artifact`` names another:

1. ``POST /score`` with 1 user x ``--candidates`` (100) candidates through a real uvicorn
   server (one worker, ``--server-threads`` ORT threads) and Redis when one answers, at fixed
   arrival rates. Open loop: an asyncio generator schedules request i at ``t0 + i / rate``
   and measures latency from that scheduled time, so a slow server cannot slow the load down
   (no coordinated omission). Reports p50 / p95 / p99, offered and achieved req/s, errors.
   The rates default to fractions of the capacity measured by a short sequential probe.
2. The share of a request's time in ONNX Runtime, Redis, the inference queue, the handler's
   own pre/post-processing, and HTTP + validation + serialization (the rest), from the
   ``Server-Timing`` header of every response and the client's latency.
3. ONNX Runtime vs PyTorch eager for the same batch (user encoder + scorer, same threads),
   as a ratio of median times.
4. The model's FLOPs per request (``torch.utils.flop_counter`` on the eager run; cross-checked
   with ``model.flops``) against the measured fp32 GEMM peak (numpy matmul, 2048^3).

Run: ``.venv/bin/python bench/bench_service.py`` (~1.5 min; ``--duration`` per rate). Writes
``reports/bench/service.json``. The server is pinned to core 0 and the generator to core 1
when there are two cores; anything else running on the machine shows in the numbers (the JSON
records the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.live import Server, uvicorn_server  # noqa: E402

# Vocabulary sizes of the bundled KuaiRand-Pure slice (temporal split): the default model's
# embedding tables have the size a `make serve` model would have.
N_USERS, N_VIDEOS = 13_079, 3_270
CACHE = ROOT / "reports" / "bench" / ".cache"


def base_artifact() -> tuple[Path, Any]:
    """Export (once, cached) an untrained configs/base.yaml model; returns (artifact, model)."""
    import torch

    from export.onnx import export_run
    from segint.vocab import Vocab
    from training.checkpoint import save_weights, write_run_files
    from training.config import load_config

    cfg = load_config(ROOT / "configs" / "base.yaml")
    model_cfg = cfg.model_config(N_USERS, N_VIDEOS)
    key = hashlib.sha256(repr(model_cfg).encode())
    for folder in ("model", "export"):
        for f in sorted((ROOT / folder).glob("*.py")):
            key.update(f.read_bytes())
    out = CACHE / f"base-{key.hexdigest()[:12]}"
    from model.network import SegmentInterestModel

    torch.manual_seed(0)
    model = SegmentInterestModel(model_cfg).eval()
    if not (out / "manifest.json").exists():
        run = CACHE / "base-run"
        write_run_files(
            run, cfg, model_cfg, Vocab(np.arange(1, N_USERS)), Vocab(np.arange(1, N_VIDEOS))
        )
        save_weights(model, run)
        print("exporting the base model (once) ...", flush=True)
        export_run(run, out, version="bench-base", force=True)
    return out, model


def load_artifact(path: Path) -> tuple[Path, Any]:
    from export.manifest import Manifest
    from training.checkpoint import load_model

    run = Manifest.read(path).source.get("run_dir")
    model = load_model(run)[0] if run and Path(run).exists() else None
    return path, model


def redis_url(arg: str | None) -> str | None:
    import redis

    url = arg or os.environ.get("SEGINT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except redis.RedisError:
        print(f"no Redis at {url}: measuring with the in-process cache", flush=True)
        return None
    return url


def parse_timing(header: str | None) -> dict[str, float]:
    """``cache;dur=0.4, ort;dur=52`` -> {"cache": 0.4, "ort": 52.0} (ms)."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


async def open_loop(url: str, bodies: list[bytes], rate: float, duration: float) -> dict[str, Any]:
    """Send ``rate * duration`` requests at fixed times; latency counts from the schedule."""
    n = max(1, int(rate * duration))
    loop = asyncio.get_running_loop()
    results: list[tuple[float, bool, dict[str, float]]] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = loop.time() + 0.2

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            try:
                r = await client.post(
                    "/score",
                    content=bodies[i % len(bodies)],
                    headers={"content-type": "application/json"},
                )
                ok, timing = r.status_code == 200, parse_timing(r.headers.get("server-timing"))
            except httpx.HTTPError:
                ok, timing = False, {}
            results.append((loop.time() - scheduled, ok, timing))

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = loop.time() - start
    lat = np.array([r[0] for r in results if r[1]]) * 1e3
    timings = [r[2] for r in results if r[1]]
    return {
        "offered_rps": rate,
        "achieved_rps": len(lat) / elapsed,
        "requests": n,
        "errors": n - len(lat),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "time_share": shares(lat, timings),
    }


def shares(latency_ms: np.ndarray, timings: list[dict[str, float]]) -> dict[str, float]:
    """Mean share of the client-side latency per stage."""
    total = float(latency_ms.mean())
    mean = {
        k: statistics.fmean(t.get(k, 0.0) for t in timings)
        for k in ("cache", "queue", "ort", "handler")
    }
    parts = {
        "onnxruntime": mean["ort"],
        "redis": mean["cache"],
        "inference_queue": mean["queue"],
        "pre_post_processing": mean["handler"] - mean["ort"] - mean["cache"] - mean["queue"],
        "http_validation_serialization": total - mean["handler"],
    }
    return {k: v / total for k, v in parts.items()} | {"mean_latency_ms": total}


def request_bodies(
    manifest: Any, n_users: int, candidates: int, seed: int = 0
) -> tuple[list[int], list[bytes]]:
    users = np.load(Path(manifest[0]) / manifest[1].vocab_users)
    videos = np.load(Path(manifest[0]) / manifest[1].vocab_videos)
    rng = np.random.default_rng(seed)
    ids = [int(u) for u in rng.choice(users, n_users, replace=False)]
    bodies = []
    for u in ids:
        vids = rng.choice(videos, candidates, replace=False)
        dur = rng.integers(3000, manifest[1].max_duration_ms, candidates)
        cands = [
            {"video_id": int(v), "duration_ms": int(d)} for v, d in zip(vids, dur, strict=True)
        ]
        bodies.append(json.dumps({"user_id": u, "candidates": cands}).encode())
    return ids, bodies


def seed_histories(url: str, users: list[int], manifest: Any, seed: int = 1) -> None:
    """Give every bench user a full history through view events (one Redis blob each)."""
    videos = np.load(Path(manifest[0]) / manifest[1].vocab_videos)
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=30) as client:
        for u in users:
            for t in range(manifest[1].history_len):
                d = int(rng.integers(3000, manifest[1].max_duration_ms))
                body = {
                    "user_id": u,
                    "video_id": int(rng.choice(videos)),
                    "duration_ms": d,
                    "play_time_ms": int(rng.integers(1, d + 1)),
                    "time_ms": t,
                }
                client.post("/events/view", json=body).raise_for_status()


def capacity_probe(url: str, bodies: list[bytes], n: int = 30) -> float:
    """Sequential requests: the mean service time in seconds."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for b in bodies[:5]:
            client.post("/score", content=b, headers={"content-type": "application/json"})
        t0 = time.perf_counter()
        for i in range(n):
            client.post(
                "/score",
                content=bodies[i % len(bodies)],
                headers={"content-type": "application/json"},
            ).raise_for_status()
    return (time.perf_counter() - t0) / n


def ort_vs_eager(
    artifact: Path, model: Any, candidates: int, threads: int, repeats: int = 30
) -> dict[str, Any]:
    """Median time of user encoder + scorer for one user x C candidates: ORT vs PyTorch."""
    import onnxruntime as ort
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from export.manifest import Manifest
    from model.flops import count_flops

    m = Manifest.read(artifact)
    h = m.history_len
    rng = np.random.default_rng(0)
    users = {
        "user_ids": np.array([1]),
        "hist_video_ids": rng.integers(1, 100, (1, h)),
        "hist_exit_slots": rng.integers(0, 3, (1, h)),
        "hist_n_segments": rng.integers(3, m.s_max, (1, h)),
        "hist_mask": np.ones((1, h), bool),
    }
    cands = {
        "video_ids": rng.integers(1, 100, candidates),
        "n_segments": rng.integers(1, m.s_max + 1, candidates),
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    enc = ort.InferenceSession(
        str(artifact / "user_encoder.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    sc = ort.InferenceSession(
        str(artifact / "scorer.onnx"), opts, providers=["CPUExecutionProvider"]
    )

    def run_ort() -> None:
        states, mask = enc.run(None, users)
        sc.run(None, {"user_states": states, "user_mask": mask, **cands})

    torch.set_num_threads(threads)
    tu = {k: torch.from_numpy(v) for k, v in users.items()}
    tc = {k: torch.from_numpy(v) for k, v in cands.items()}

    @torch.no_grad()
    def run_torch() -> None:
        states, mask = model.encode_user(**tu)
        model.score(states, mask, **tc)

    def median_ms(fn: Any) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    ort_ms, torch_ms = median_ms(run_ort), median_ms(run_torch)
    with FlopCounterMode(display=False) as counter:
        run_torch()
    analytic = count_flops(model.cfg, candidates)
    return {
        "threads": threads,
        "candidates": candidates,
        "ort_ms": ort_ms,
        "torch_eager_ms": torch_ms,
        "torch_over_ort": torch_ms / ort_ms,
        "flops_per_request": int(counter.get_total_flops()),
        "flops_per_request_model_flops": 2 * analytic.total,
        "flops_per_candidate": 2 * analytic.per_candidate,
        "ort_gflops_per_s": counter.get_total_flops() / (ort_ms * 1e-3) / 1e9,
    }


def gemm_peak(threads: int, n: int = 2048) -> float:
    """fp32 GEMM GFLOP/s of numpy (OpenBLAS) with ``threads`` threads, best of 5."""
    code = (
        "import numpy as np, time\n"
        f"a = np.random.rand({n}, {n}).astype(np.float32); b = a.copy(); a @ b\n"
        "best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))\n"
        f"print(2 * {n}**3 / best / 1e9)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    return float(
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, help="artifact to serve (default: base model)")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--users", type=int, default=20, help="distinct users in the load")
    p.add_argument("--rates", help="comma-separated req/s (default: 0.25,0.5,0.75,0.9 x capacity)")
    p.add_argument("--duration", type=float, default=12.0, help="seconds per rate")
    p.add_argument("--server-threads", type=int, default=1, help="ORT intra-op threads")
    p.add_argument("--redis-url", help="default: SEGINT_TEST_REDIS_URL or 127.0.0.1:6379/15")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "service.json")
    args = p.parse_args()

    from export.manifest import Manifest

    artifact, model = load_artifact(args.artifact) if args.artifact else base_artifact()
    manifest = Manifest.read(artifact)
    url_redis = redis_url(args.redis_url)
    prefix = f"segint-bench-{uuid.uuid4().hex[:8]}"
    env = {
        "SEGINT_ARTIFACT_DIR": str(artifact),
        "SEGINT_INTRA_OP_THREADS": str(args.server_threads),
        "SEGINT_KEY_PREFIX": prefix,
        "SEGINT_MAX_CANDIDATES": str(max(1000, args.candidates)),
    }
    if url_redis:
        env["SEGINT_REDIS_URL"] = url_redis
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})  # the generator; the server gets core 0 (below)
    users, bodies = request_bodies((artifact, manifest), args.users, args.candidates)
    tmp = CACHE / "logs"
    tmp.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with uvicorn_server(env, tmp, wrap=["taskset", "-c", "0"] if pin else None) as server:
        seed_histories(server.url, users, (artifact, manifest))
        service_s = capacity_probe(server.url, bodies)
        capacity = 1 / service_s
        rates = (
            [float(r) for r in args.rates.split(",")]
            if args.rates
            else [round(f * capacity, 1) for f in (0.25, 0.5, 0.75, 0.9)]
        )
        print(
            f"sequential service time {service_s * 1e3:.1f} ms -> capacity ~{capacity:.1f} req/s",
            flush=True,
        )
        runs = []
        for rate in rates:
            r = asyncio.run(open_loop(server.url, bodies, rate, args.duration))
            runs.append(r)
            print(
                f"rate {rate:6.1f}/s: achieved {r['achieved_rps']:6.1f}/s  p50 {r['p50_ms']:7.1f}  "
                f"p95 {r['p95_ms']:7.1f}  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}",
                flush=True,
            )
        metrics = httpx.get(f"{server.url}/metrics").text
        result["server"] = server_info(server, metrics)
    cleanup_redis(url_redis, prefix)
    eager = (
        ort_vs_eager(artifact, model, args.candidates, args.server_threads)
        if model is not None
        else None
    )
    peaks = {"1_thread": gemm_peak(1), f"{os.cpu_count()}_threads": gemm_peak(os.cpu_count() or 1)}
    result |= {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "artifact": {
            "path": str(artifact),
            "model_version": manifest.model_version,
            "user_stream": manifest.user_stream,
            "config": manifest.config,
        },
        "setup": {
            "candidates": args.candidates,
            "users": args.users,
            "duration_s": args.duration,
            "server_threads": args.server_threads,
            "cache": "redis" if url_redis else "local",
            "pinned": pin,
        },
        "sequential_service_ms": service_s * 1e3,
        "open_loop": runs,
        "ort_vs_torch_eager": eager,
        "gemm_peak_gflops": peaks,
    }
    if eager:
        result["flops_vs_peak"] = {
            "gflop_per_request": eager["flops_per_request"] / 1e9,
            "ort_fraction_of_1_thread_peak": eager["ort_gflops_per_s"] / peaks["1_thread"],
        }
        print(
            f"ORT {eager['ort_ms']:.1f} ms vs PyTorch eager {eager['torch_eager_ms']:.1f} ms (x{eager['torch_over_ort']:.2f}); {eager['flops_per_request'] / 1e9:.2f} GFLOP/request = {eager['ort_gflops_per_s']:.1f} GFLOP/s vs peak {peaks['1_thread']:.1f} (1 thread)"
        )
    share = runs[0]["time_share"]
    print(
        "time share at the lowest rate: "
        + ", ".join(f"{k} {v:.1%}" for k, v in share.items() if k != "mean_latency_ms")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def server_info(server: Server, metrics: str) -> dict[str, Any]:
    info = httpx.get(f"{server.url}/healthz").json()
    hits = [line for line in metrics.splitlines() if line.startswith("segint_cache_requests_total")]
    return {"healthz": info, "cache_counters": hits}


def cleanup_redis(url: str | None, prefix: str) -> None:
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
