"""The inference hand-off: an event loop handing a no-op to one worker thread and back.

Two ways, interleaved block by block in one process pinned to one core (a replica's core):
``pool``, a `ThreadPoolExecutor` of one thread awaited through `asyncio.wrap_future` (the
service's hand-off until round 13), and ``threads``, `service.shedding.InferenceThreads`
(a queue in, ``call_soon_threadsafe`` on the caller's future out). Per way: the median
time from the submit to the start of the call in the thread (``in``), from its end back to
the awaiting coroutine (``out``), and their mean sum, over ``--runs`` round trips, each
after a short sleep (a request's hand-offs come after the loop has idled).

Run: ``taskset -c 0 .venv/bin/python bench/bench_handoff.py`` (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.shedding import InferenceThreads  # noqa: E402

Way = Callable[[Callable[[], float]], Awaitable[float]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2000, help="round trips per way and block")
    p.add_argument("--blocks", type=int, default=4, help="alternating blocks per way")
    args = p.parse_args()
    pool = ThreadPoolExecutor(1)
    threads = InferenceThreads(1)

    async def via_pool(fn: Callable[[], float]) -> float:
        with anyio.CancelScope(shield=True):
            return await asyncio.wrap_future(pool.submit(fn))

    ways: dict[str, Way] = {"pool": via_pool, "threads": threads.run}

    async def measure() -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {w: {"in": [], "out": []} for w in ways}
        for _ in range(args.blocks):
            for name, way in ways.items():
                for _ in range(args.runs):
                    await asyncio.sleep(0.0005)
                    t0 = time.perf_counter()
                    started = await way(time.perf_counter)
                    t1 = time.perf_counter()
                    out[name]["in"].append(started - t0)
                    out[name]["out"].append(t1 - started)
        return out

    try:
        result = uvloop.run(measure())
    finally:
        pool.shutdown()
        threads.close()
    print(f"cpus allowed: {sorted(os.sched_getaffinity(0))}")
    for name, t in result.items():
        total = statistics.fmean(t["in"]) + statistics.fmean(t["out"])
        print(
            f"{name:8s} in {statistics.median(t['in']) * 1e6:6.1f} us  out "
            f"{statistics.median(t['out']) * 1e6:6.1f} us  mean round trip {total * 1e6:6.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
