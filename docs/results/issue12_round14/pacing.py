"""Round 14: the open-loop generator's pacing, side by side on one server.

One server (uvicorn pinned to core 0, the load from core 1, real Redis at 127.0.0.1:6379/15
under a key prefix removed afterwards; `bench/bench_service.py`'s base artifact, real KuaiRand
candidates, 20 users with histories) is loaded with `bench_service.open_loop` alternately with
``pacing="asyncio"`` (rounds 1-13: ``asyncio.sleep`` to each send time) and ``pacing="thread"``
(`bench.pacer.Pacer`), ABBA, ``rounds`` rounds of 8 s per cell. Per cell and pacing: the mean
over rounds of p50, p99, the generator's send lateness (p50, p99) and the server's handler
time; thread - asyncio paired by round +- its standard error.

Run: .venv/bin/python docs/results/issue12_round14/pacing.py [rounds]
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import bench_service as b  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from tests.service.live import uvicorn_server  # noqa: E402

CELLS = ((100, 50.0), (500, 30.0))
FIELDS = ("p50_ms", "p99_ms", "send_late_p50_ms", "send_late_p99_ms", "handler_ms")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    os.sched_setaffinity(0, {1})
    artifact, _ = b.base_artifact()
    manifest = Manifest.read(artifact)
    videos = b.kuairand_videos(manifest.s_max)
    users_vocab = np.load(artifact / manifest.vocab_users)
    url_redis = "redis://127.0.0.1:6379/15"
    logs = b.CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    prefix = f"segint-pacing-{uuid.uuid4().hex[:8]}"
    env = {
        "SEGINT_ARTIFACT_DIR": str(artifact),
        "SEGINT_INTRA_OP_THREADS": "1",
        "SEGINT_KEY_PREFIX": prefix,
        "SEGINT_MAX_CANDIDATES": "1000",
        "SEGINT_SCORER_PRECISION": "fp32",
        "SEGINT_REDIS_URL": url_redis,
    }
    out: dict[tuple[int, float], dict[str, list[tuple[float, ...]]]] = {
        cell: {"asyncio": [], "thread": []} for cell in CELLS
    }
    try:
        with uvicorn_server(env, logs, wrap=["taskset", "-c", "0"]) as server:
            for c, rate in CELLS:
                users, bodies = b.request_bodies(videos, users_vocab, 20, c, None)
                b.seed_histories(server.url, users, (artifact, manifest))
                b.capacity_probe(server.url, bodies, n=10)
                for r in range(rounds):
                    for pacing in ("asyncio", "thread") if r % 2 == 0 else ("thread", "asyncio"):
                        o = asyncio.run(b.open_loop(server.url, bodies, rate, 8.0, "raw", pacing))
                        o["handler_ms"] = o["ort_ms"] + o["handler_minus_ort_ms"]
                        out[(c, rate)][pacing].append(tuple(float(o[f]) for f in FIELDS))
                        sys.stdout.write(
                            f"C={c} {rate:.0f}/s round {r} {pacing}: "
                            f"{dict(zip(FIELDS, out[(c, rate)][pacing][-1], strict=True))}\n"
                        )
    finally:
        b.cleanup_redis(url_redis, prefix)
    for cell in CELLS:
        for i, field in enumerate(FIELDS):
            a = np.array([x[i] for x in out[cell]["asyncio"]])
            t = np.array([x[i] for x in out[cell]["thread"]])
            d = t - a
            se = d.std(ddof=1) / len(d) ** 0.5
            sys.stdout.write(
                f"C = {cell[0]} at {cell[1]:.0f} req/s, {field}: asyncio {a.mean():.2f}, "
                f"thread {t.mean():.2f}, thread - asyncio {d.mean():+.2f} +- {se:.2f}\n"
            )


if __name__ == "__main__":
    main()
