"""Round 13: two checkouts' servers A and B under the same open-loop load, alternated (ABBA...).

Each round starts one server at a time (uvicorn pinned to core 0, the load from the other
core, real Redis at 127.0.0.1:6379/15 under a key prefix removed afterwards) from the given
checkout's code (``python -m`` imports it first; each checkout needs its own kernel library,
``python -m service.kernels build --out build/kernels/segint_ops.so`` run in it), on
`bench/bench_service.py`'s base artifact, and loads it at 500 candidates x 15 and 30 req/s and
100 candidates x 50 req/s for 8 s each (real KuaiRand candidates, 20 users with histories).
Per cell: the mean over rounds of p99, handler - ORT, the hand-offs and the ORT stage, and
B - A paired by round +- its standard error.

Run (a worktree of the older commit as A):
    git worktree add /work/wt_a COMMIT && (cd /work/wt_a && $PWD/.venv/bin/python -m
    service.kernels build --out build/kernels/segint_ops.so)
    .venv/bin/python docs/results/issue12_round13/ab_servers.py /work/wt_a . 4
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import bench_service as b  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from tests.service.live import uvicorn_server  # noqa: E402

CELLS = ((500, 15.0), (500, 30.0), (100, 50.0))
FIELDS = ("p99_ms", "handler_minus_ort_ms", "handoff_ms", "ort_ms")


def main() -> None:
    checkouts = {"A": Path(sys.argv[1]).resolve(), "B": Path(sys.argv[2]).resolve()}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    artifact, _ = b.base_artifact()
    manifest = Manifest.read(artifact)
    videos = b.kuairand_videos(manifest.s_max)
    users_vocab = np.load(artifact / manifest.vocab_users)
    url_redis = "redis://127.0.0.1:6379/15"
    logs = b.CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[dict[tuple[int, float], tuple[float, ...]]]] = {"A": [], "B": []}
    for r in range(rounds):
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            prefix = f"segint-ab-{uuid.uuid4().hex[:8]}"
            env = {
                "SEGINT_ARTIFACT_DIR": str(artifact),
                "SEGINT_INTRA_OP_THREADS": "1",
                "SEGINT_KEY_PREFIX": prefix,
                "SEGINT_MAX_CANDIDATES": "1000",
                "SEGINT_SCORER_PRECISION": "fp32",
                "SEGINT_REDIS_URL": url_redis,
            }
            try:
                with uvicorn_server(
                    env, logs, wrap=["taskset", "-c", "0"], cwd=checkouts[name]
                ) as server:
                    row = {}
                    for c, rate in CELLS:
                        users, bodies = b.request_bodies(videos, users_vocab, 20, c, None)
                        b.seed_histories(server.url, users, (artifact, manifest))
                        b.capacity_probe(server.url, bodies, n=10)
                        o = asyncio.run(b.open_loop(server.url, bodies, rate, 8.0, "raw"))
                        row[(c, rate)] = tuple(float(o[f]) for f in FIELDS)
                    out[name].append(row)
                    sys.stdout.write(f"{name} round {r}: {row}\n")
            finally:
                b.cleanup_redis(url_redis, prefix)
    for cell in CELLS:
        for i, field in enumerate(FIELDS):
            a = np.array([x[cell][i] for x in out["A"]])
            v = np.array([x[cell][i] for x in out["B"]])
            d = v - a
            se = d.std(ddof=1) / len(d) ** 0.5
            sys.stdout.write(
                f"C = {cell[0]} at {cell[1]:.0f} req/s, {field}: A {a.mean():.2f}, B {v.mean():.2f}, "
                f"B - A {d.mean():+.2f} +- {se:.2f}\n"
            )


if __name__ == "__main__":
    main()
