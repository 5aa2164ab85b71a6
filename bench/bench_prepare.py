"""Benchmark `segint data prepare`: rows/s and peak memory on a generated KuaiRand-format log.

    .venv/bin/python bench/bench_prepare.py --rows 10000000

Generates a log with the 19 official KuaiRand columns (realistic value ranges, ~3% exact
duplicates, ~10% zero play time, unclicked rows) in a temporary folder, then runs
`segint data prepare` on it in a child process and reports wall time, rows/s and the child's
peak resident memory. Writes reports/bench/prepare.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from segint.data import KUAIRAND_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, rows: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            dur = rng.integers(0, 300_000, n)
            play = np.where(rng.random(n) < 0.1, 0, (dur * rng.gamma(1.0, 0.6, n)).astype(np.int64))
            cols = {c: np.zeros(n, dtype=np.int64) for c in KUAIRAND_COLUMNS}
            cols.update(
                user_id=rng.integers(0, 27_000, n),
                video_id=rng.integers(0, 7_600, n),
                date=np.full(n, 20220425),
                hourmin=rng.integers(0, 2400, n),
                time_ms=1_650_812_741_436 + start + np.arange(n) * 37,
                is_click=(rng.random(n) < 0.6).astype(np.int64),
                long_view=(rng.random(n) < 0.3).astype(np.int64),
                play_time_ms=play,
                duration_ms=dur,
                tab=rng.integers(0, 5, n),
            )
            df = pl.DataFrame(cols)
            dup = df.sample(fraction=0.03, seed=int(rng.integers(1 << 31)))
            pl.concat([df.head(n - dup.height), dup]).write_csv(f, include_header=start == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "prepare.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.csv"
        t0 = time.perf_counter()
        generate(log, args.rows)
        gen_s = time.perf_counter() - t0
        size_mb = log.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows ({size_mb:,.0f} MiB) in {gen_s:.1f} s")
        cmd = [
            sys.executable,
            "-m",
            "segint.cli",
            "data",
            "prepare",
            "--input",
            str(log),
            "--format",
            "kuairand",
            "--out",
            str(Path(tmp) / "prep"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = json.loads((Path(tmp) / "prep" / "summary.json").read_text())
    result = {
        "rows": args.rows,
        "csv_mib": round(size_mb, 1),
        "seconds": round(wall, 2),
        "rows_per_s": round(args.rows / wall),
        "peak_rss_mib": round(peak_mib, 1),
        "rows_kept": summary["rows_kept"],
        "dropped": summary["dropped"],
    }
    print(proc.stdout.splitlines()[0])
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
