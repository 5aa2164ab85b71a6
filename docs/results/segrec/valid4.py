"""Validation AUC (the saved epoch's) of round-4 runs, mean ± std over seeds, per variant.

usage: python docs/results/segrec/valid4.py runs/segrec4/temporal [SEEDS]   (SEEDS e.g. 0,1,2)
Reads RUN/metrics.jsonl only (validation rows); test rows play no part.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

by: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
wanted = {int(x) for x in sys.argv[2].split(",")} if len(sys.argv) > 2 else None
for metrics in sorted(Path(sys.argv[1]).glob("s*/*/metrics.jsonl")):
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    if not lines:
        continue
    best = max(lines, key=lambda r: r["AUC"])
    seed = int(metrics.parent.parent.name[1:])
    if wanted is None or seed in wanted:
        by[metrics.parent.name].append((seed, best["AUC"], best["epoch"]))
for name, rows in sorted(by.items()):
    aucs = np.array([a for _, a, _ in rows])
    epochs = ",".join(str(e) for _, _, e in sorted(rows))
    std = aucs.std(ddof=1) if len(aucs) > 1 else float("nan")
    line = f"{name:40s} n={len(aucs)} valid AUC {aucs.mean():.4f} ± {std:.4f}  epochs {epochs}"
    sys.stdout.write(line + "\n")
