"""Round 13: the kernel scorer's bucket-plan run cost (`KERNEL_RUN_OVERHEAD_SLOTS`) again, now
that the kernel computes a candidate's own rows only (padding rows cost it nothing), and that
change against the round-12 kernel.

One process, one ORT thread: `bench/bench_service.py`'s base model (exported once into
reports/bench/.cache) loaded by `service.ranker.Ranker` as the service loads it; one user with
20 history views; per round fresh candidates drawn from the bundled KuaiRand log's videos (no
model's test rows), every variant scored on them in a rotated order. A variant is a run cost
with this checkout's kernel library, or ``LIB@COST``: another build of the library (e.g. the
round-12 kernel, built from git history with ``python -m service.kernels build --out LIB``).
Per variant and C: the mean runs per request, the median ORT stage (ms) and the paired ratios
of the ORT stage and of the whole `Ranker.score` to the first variant's, +- bootstrap SE over
the rounds.

Run: taskset -c 0 .venv/bin/python docs/results/issue12_round13/overhead.py ROUNDS V1,V2,...
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import bench_service as b  # noqa: E402
from export.manifest import Manifest  # noqa: E402
from segint.segments import n_segments  # noqa: E402
from service.history import History  # noqa: E402
from service.ranker import Ranker, Timings, bucket_plan  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    variants = (sys.argv[2] if len(sys.argv) > 2 else "128,256,512,1024").split(",")
    artifact, _ = b.base_artifact()
    m = Manifest.read(artifact)
    videos = b.kuairand_videos(m.s_max)
    rankers: dict[str, tuple[Ranker, int]] = {}
    for v in variants:
        lib, _, cost = v.rpartition("@")
        ranker = Ranker.load(artifact, kernel_library=lib or None)
        assert ranker.kernel, f"{v}: the kernel scorer did not load"
        rankers[v] = (ranker, int(cost))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(videos[0]), 20)
    hist = History.from_views(
        videos[0][pick].tolist(), videos[1][pick].tolist(), [3000] * 20,
        list(range(1000, 21000, 1000)), cap=rankers[variants[0]][0].history_cap,
    )  # fmt: skip
    states = {v: r.encode_user(5, hist) for v, (r, _) in rankers.items()}
    for c in (100, 500):
        ort: dict[str, list[float]] = {v: [] for v in variants}
        total: dict[str, list[float]] = {v: [] for v in variants}
        runs: dict[str, list[int]] = {v: [] for v in variants}
        for r in range(rounds):
            pick = rng.choice(len(videos[0]), c, replace=False)
            vids, dur = videos[0][pick], videos[1][pick]
            for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
                ranker, cost = rankers[v]
                ranker.run_overhead = cost
                t = Timings()
                t0 = time.perf_counter()
                ranker.score(5, states[v], vids, dur, t)
                total[v].append(time.perf_counter() - t0)
                ort[v].append(t.ort_s)
                nseg = np.clip(n_segments(dur), 1, m.s_max)
                runs[v].append(len(bucket_plan(nseg, m.s_max, cost)[1]))
        ref = variants[0]
        boot = np.random.default_rng(1)
        sys.stdout.write(f"C = {c}, {rounds} rounds, against {ref}\n")
        for v in variants:
            line = [f"{v}: runs {np.mean(runs[v]):4.1f}, ORT {np.median(ort[v]) * 1e3:6.2f} ms"]
            for name, x in (("ORT", ort), ("score", total)):
                ratio = np.array(x[v]) / np.array(x[ref])
                means = [ratio[boot.integers(0, rounds, rounds)].mean() for _ in range(1000)]
                line.append(f"{name} ratio {ratio.mean():.3f} +- {np.std(means):.3f}")
            sys.stdout.write("  " + ", ".join(line) + "\n")


if __name__ == "__main__":
    main()
