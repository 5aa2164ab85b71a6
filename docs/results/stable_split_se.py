"""Strict NDCG@5 of two `--predictions` files (each its own test rows) with bootstrap standard
errors over rows, and how many test rows (user, video, time) the two files share.

    python docs/results/stable_split_se.py OLD.parquet NEW.parquet
"""

from __future__ import annotations

import sys

import numpy as np

from segint.metrics import per_row_metrics
from segint.predictions import method_arrays, read_predictions

KEY = ["user_id", "video_id", "time_ms"]


def main(paths: list[str]) -> None:
    frames = [read_predictions(p) for p in paths]
    for path, f in zip(paths, frames, strict=True):
        for method in ("ItemPosition+prior", "ItemPosition+prior|N"):
            scores, dist = method_arrays(f, method, path)
            target, n_seg = f["exit_slot"].to_numpy(), f["n_segments"].to_numpy()
            seed = int(f["tie_seed"][0])
            v = per_row_metrics(scores, dist, target, n_seg, "strict", seed)["NDCG@5"]
            v = v[~np.isnan(v)]
            rng = np.random.default_rng(0)
            boots = [v[rng.integers(0, len(v), len(v))].mean() for _ in range(1000)]
            sys.stdout.write(
                f"{path} {method}: strict NDCG@5 {v.mean():.4f} ± {np.std(boots):.4f} "
                f"({len(v)} ranked rows of {f.height})\n"
            )
    if len(frames) == 2:
        shared = frames[0].select(KEY).join(frames[1].select(KEY), on=KEY, how="inner").height
        sys.stdout.write(f"test rows in both files: {shared}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
