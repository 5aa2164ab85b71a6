"""What the outage journal's fsync costs: append latency and throughput, alone and grouped.

Appends ``--events`` view events to a fresh journal (``--dir``, default ``reports/bench``:
the file system the service would use matters, so point it there) with 1, 8 and 64 appenders
at once. One appender waits for an fsync per event; concurrent appenders share one fsync per
group (group commit). Reports per-append latency p50/p99, events/s and events per fsync, and
the same writes without fsync (the page cache only) for scale.
Run: ``.venv/bin/python bench/bench_journal.py``; writes ``reports/bench/journal.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.journal import Journal, encode  # noqa: E402


async def appenders(journal: Journal, events: int, concurrency: int) -> list[float]:
    lat: list[float] = []
    per = events // concurrency

    async def one(worker: int) -> None:
        for i in range(per):
            t0 = time.perf_counter()
            await journal.append((worker, i, 9000, 3000, i))
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(w) for w in range(concurrency)))
    return lat


def run(folder: Path, events: int, concurrency: int) -> dict[str, Any]:
    path = folder / f"bench-{concurrency}.journal"
    path.unlink(missing_ok=True)
    journal = Journal.open(path)
    t0 = time.perf_counter()
    lat = np.array(asyncio.run(appenders(journal, events, concurrency))) * 1e3
    wall = time.perf_counter() - t0
    fsyncs = journal.fsyncs
    journal.close()
    path.unlink()
    return {
        "appenders": concurrency,
        "events": len(lat),
        "events_per_s": len(lat) / wall,
        "append_p50_ms": float(np.percentile(lat, 50)),
        "append_p99_ms": float(np.percentile(lat, 99)),
        "fsyncs": fsyncs,
        "events_per_fsync": len(lat) / fsyncs,
    }


def no_fsync(folder: Path, events: int) -> dict[str, float]:
    path = folder / "bench-nofsync.journal"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    t0 = time.perf_counter()
    for i in range(events):
        os.write(fd, encode((0, i, 9000, 3000, i)))
    wall = time.perf_counter() - t0
    os.close(fd)
    path.unlink()
    return {"events": events, "events_per_s": events / wall, "append_mean_ms": wall / events * 1e3}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=2048)
    p.add_argument("--dir", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "journal.json")
    args = p.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        fs = subprocess.run(
            ["df", "-T", str(folder)], capture_output=True, text=True, check=False
        ).stdout.splitlines()[-1]
        report = {
            "filesystem": fs,
            "loadavg": os.getloadavg(),
            "fsync": [run(folder, args.events, c) for c in (1, 8, 64)],
            "no_fsync": no_fsync(folder, args.events),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"file system: {report['filesystem']}  load: {report['loadavg']}")
    print("| appenders | events/s | append p50 ms | append p99 ms | events per fsync |")
    print("|---|---|---|---|---|")
    for r in report["fsync"]:
        print(
            f"| {r['appenders']} | {r['events_per_s']:.0f} | {r['append_p50_ms']:.2f} "
            f"| {r['append_p99_ms']:.2f} | {r['events_per_fsync']:.1f} |"
        )
    nf = report["no_fsync"]
    print(f"without fsync: {nf['events_per_s']:.0f} events/s ({nf['append_mean_ms']:.4f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
