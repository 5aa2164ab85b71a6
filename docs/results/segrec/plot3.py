"""Paired differences vs Video (same rows and seed, ± 2 bootstrap SE) of `segint segrec evaluate
--json` files, one panel per metric: python docs/results/segrec/plot3.py EVAL.json OUT.png"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    paired = json.loads(Path(src).read_text())["paired_vs_video"]
    rows = [
        (f"{b}/{m}", e) for b, methods in sorted(paired.items()) for m, e in sorted(methods.items())
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 1.5), sharey=True)
    for ax, metric, better in zip(axes, ("AUC", "LogLoss"), ("right", "left"), strict=True):
        deltas = [e[metric]["delta"] for _, e in rows]
        errs = [2 * e[metric]["se"] for _, e in rows]
        ax.errorbar(deltas, range(len(rows)), xerr=errs, fmt="o", capsize=3)
        ax.axvline(0.0, color="grey", lw=1)
        ax.set_title(f"Δ{metric} vs Video (± 2 SE), better to the {better}")
    axes[0].set_yticks(range(len(rows)), [name for name, _ in rows])
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
