"""Soak: the server's RSS while traffic keeps bringing users it has never seen.

Every request is ``POST /score`` for a user drawn from ``--users`` (1,000,000) distinct ids,
with a ``history_len``-view history in the request, so each new user costs one user-encoder
run and one blob in the in-process LRU (the cache without Redis, the mirror with it). The
LRU is bounded by ``--cache-mb`` (``SEGINT_LOCAL_CACHE_MB``; default the service default).
``--clients`` closed-loop clients send requests for ``--minutes`` (10); the server's RSS
(``/proc/<pid>/status`` VmRSS) and ``segint_local_cache_bytes`` are sampled every second.

Output: ``reports/bench/soak.json`` (samples and summary) and ``reports/bench/soak_rss.png``
(RSS and cache bytes against time, with the cache bound and the 1 GiB container limit).
Run: ``.venv/bin/python bench/soak_cache.py [--minutes 10] [--cache-mb 256]``. On a shared
machine the request rate (and so how many users a run reaches) depends on the other load;
the JSON records the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import base_artifact  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.live import uvicorn_server  # noqa: E402

CONTAINER_LIMIT_MB = 1024  # deploy/ and docker-compose.yml memory limit


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


async def soak(
    url: str, pid: int, artifact: Path, args: argparse.Namespace
) -> tuple[list[dict[str, float]], int, dict[str, int]]:
    manifest = Manifest.read(artifact)
    videos = np.load(artifact / manifest.vocab_videos)
    rng = np.random.default_rng(0)
    users = rng.permutation(args.users)  # each id once until all were used
    cands = [
        {"video_id": int(v), "duration_ms": 20000} for v in rng.choice(videos, args.candidates)
    ]
    history = [
        {"video_id": int(v), "duration_ms": 20000, "play_time_ms": 7000, "time_ms": t}
        for t, v in enumerate(rng.choice(videos, manifest.history_len))
    ]
    samples: list[dict[str, float]] = []
    sent = 0
    statuses: dict[str, int] = {}
    end = time.monotonic() + args.minutes * 60
    t0 = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < end:
            user = int(users[sent % len(users)])
            sent += 1
            body = {"user_id": user, "candidates": cands, "history": history}
            try:
                status = str((await http.post("/score", json=body)).status_code)
            except httpx.HTTPError as e:
                status = type(e).__name__
            statuses[status] = statuses.get(status, 0) + 1

    async def sampler(http: httpx.AsyncClient, bar: tqdm) -> None:  # type: ignore[type-arg]
        while time.monotonic() < end:
            text = (await http.get("/metrics")).text
            samples.append(
                {
                    "t_s": time.monotonic() - t0,
                    "rss_mb": rss_mb(pid),
                    "cache_mb": gauge(text, "segint_local_cache_bytes") / 2**20,
                    "users_sent": sent,
                }
            )
            bar.n = int(time.monotonic() - t0)
            bar.set_postfix(rss_mb=f"{samples[-1]['rss_mb']:.0f}", users=sent)
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        with tqdm(total=int(args.minutes * 60), unit="s", desc="soak") as bar:
            await asyncio.gather(sampler(http, bar), *(client(http) for _ in range(args.clients)))
    return samples, sent, statuses


def plot(samples: list[dict[str, float]], cache_mb: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(t, [s["rss_mb"] for s in samples], label="server RSS")
    ax.plot(t, [s["cache_mb"] for s in samples], label="LRU bytes (segint_local_cache_bytes)")
    ax.axhline(cache_mb, ls="--", c="gray", label=f"SEGINT_LOCAL_CACHE_MB = {cache_mb:g}")
    ax.axhline(CONTAINER_LIMIT_MB, ls=":", c="red", label="container limit (1 GiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(0, CONTAINER_LIMIT_MB * 1.1)
    ax2 = ax.twinx()
    ax2.plot(t, [s["users_sent"] / 1e3 for s in samples], c="green", alpha=0.4, lw=1)
    ax2.set_ylabel("users sent (thousands, green)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, help="default: the untrained base model")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--users", type=int, default=1_000_000, help="distinct user ids")
    p.add_argument(
        "--cache-mb", type=float, default=Settings.model_fields["local_cache_mb"].default
    )
    p.add_argument("--candidates", type=int, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "soak.json")
    args = p.parse_args()
    artifact = args.artifact or base_artifact()[0]
    env = {
        "SEGINT_ARTIFACT_DIR": str(artifact),
        "SEGINT_LOCAL_CACHE_MB": str(args.cache_mb),
        "SEGINT_LOCAL_CACHE_SIZE": str(10**9),  # the byte bound alone
        "SEGINT_ORT_SPINNING": "false",
        "SEGINT_MODEL_WATCH_S": "0",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    with uvicorn_server(env, args.out.parent) as server:
        samples, sent, statuses = asyncio.run(soak(server.url, server.pid, artifact, args))
    rss = [s["rss_mb"] for s in samples]
    last = rss[len(rss) * 3 // 4 :]  # the last quarter of the run
    summary: dict[str, Any] = {
        "minutes": args.minutes,
        "requests": sent,
        "distinct_users": min(sent, args.users),
        "statuses": statuses,  # 503 = shed (load shedding), anything but 200/503 = error
        "cache_mb": args.cache_mb,
        "rss_start_mb": rss[0],
        "rss_max_mb": max(rss),
        "rss_last_quarter_min_max_mb": [min(last), max(last)],
        "cache_mb_max": max(s["cache_mb"] for s in samples),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
    }
    args.out.write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    png = args.out.with_name("soak_rss.png")
    plot(
        samples,
        args.cache_mb,
        png,
        f"{args.minutes:g} min, {sent:,} users of {args.users:,} (one new user per request), "
        f"LRU bound {args.cache_mb:g} MiB",
    )
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out} and {png}")
    return 0 if set(statuses) <= {"200", "503"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
