"""Mean ± std over seeds of `segint baselines --json` reports, as Markdown, plus a PNG.

    python -m learned.summary --reports /work/results/temporal-s{0,1,2}/learned-neural.json \\
        --methods din-slot sasrec "ItemPosition+prior|N" --png docs/results/x.png

Prints one table per report block (``strict``, ``paper``, ``strict_cold``, ``paper_cold``):
the metrics of `segint.metrics` and, for learned baselines, the training seconds recorded in
their ``settings``. The std is over the reports given (seeds), not a standard error of a
difference; paired comparisons are `segint compare`'s job.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

BLOCKS = ("strict", "paper", "strict_cold", "paper_cold")
METRICS = ("HR@1", "HR@5", "NDCG@5", "NDCG@10", "MAE", "XAUC")


def cell(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        return "-"
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def tables(reports: list[dict[str, Any]], methods: list[str]) -> str:
    """Markdown tables, one per block, methods in the order given."""
    lines = []
    for block in BLOCKS:
        lines += [f"**{block}**", ""]
        lines.append("| method | " + " | ".join(METRICS) + " | train s |")
        lines.append("|---" * (len(METRICS) + 2) + "|")
        for m in methods:
            cells = [cell([r[block][m][k] for r in reports]) for k in METRICS]
            secs = [r.get("settings", {}).get(m, {}).get("train_seconds") for r in reports]
            t = f"{np.mean(secs):.0f} ± {np.std(secs, ddof=1):.0f}" if None not in secs else "-"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {t} |")
        lines.append("")
    rows = reports[0]["rows"]
    lines.append(f"rows (first report): test {rows['test']:,}, cold {rows['test_cold']:,}")
    return "\n".join(lines)


def plot(reports: list[dict[str, Any]], methods: list[str], png: Path) -> None:
    """Bars of strict NDCG@5 (all and cold rows) with the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 3.5))
    x = np.arange(len(methods))
    for k, (block, label) in enumerate((("strict", "all rows"), ("strict_cold", "cold videos"))):
        v = np.array([[r[block][m]["NDCG@5"] for r in reports] for m in methods])
        ax.bar(x + 0.4 * k - 0.2, v.mean(1), 0.4, yerr=v.std(1, ddof=1), label=label, capsize=3)
    ax.set_xticks(x, methods, rotation=20, ha="right")
    ax.set_ylabel("NDCG@5 (strict)")
    ax.set_ylim(bottom=0.3)
    ax.legend()
    ax.set_title(f"mean ± std over {len(reports)} seeds")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", nargs="+", type=Path, required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--png", type=Path)
    args = p.parse_args(argv)
    try:
        reports = [json.loads(r.read_text()) for r in args.reports]
        missing = [m for m in args.methods if any(m not in r["strict"] for r in reports)]
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write(f"error: cannot read the reports: {e}\n")
        return 2
    if missing:
        sys.stderr.write(f"error: --methods not in every report: {', '.join(missing)}\n")
        return 2
    sys.stdout.write(tables(reports, args.methods) + "\n")
    if args.png:
        plot(reports, args.methods, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
