"""Print the load reports in reports/load/ as one Markdown table, lowest offered rate first.

    .venv/bin/python deploy/load/summarize.py [reports/load/rate*_summary.json ...]

Columns: offered and achieved req/s, p50/p95/p99/max latency (ms, all routes), errors over
the whole run, and /score's own p50/p99. A rate is "sustained" when the achieved rate is
within 2% of the offered one and no request failed; past the saturation point the arrival
rate can no longer be held (users fall behind) and latency grows with the queue.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def row(path: Path) -> tuple[float, str]:
    s = json.loads(path.read_text())
    score = s["per_route"].get("/score", {})
    sustained = s["achieved_rps"] >= 0.98 * s["offered_rps"] and s["whole_run_failures"] == 0
    cells = [
        f"{s['offered_rps']:g}",
        f"{s['achieved_rps']:.2f}",
        *(f"{s[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        f"{s['whole_run_failures']}/{s['whole_run_requests']}",
        f"{score.get('p50_ms', 0):.0f} / {score.get('p99_ms', 0):.0f}",
        "yes" if sustained else "no",
        path.name.removesuffix("_summary.json"),
    ]
    return s["offered_rps"], "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(
        (ROOT / "reports" / "load").glob("rate*_summary.json")
    )
    if not paths:
        sys.stderr.write("summarize: no reports/load/rate*_summary.json (run `make load` first)\n")
        return 2
    header = (
        "| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | errors | "
        "/score p50 / p99 ms | sustained | report |"
    )
    sys.stdout.write(header + "\n" + "|---" * (header.count("|") - 1) + "|\n")
    for _, line in sorted(row(p) for p in paths):
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
