"""Round 12 (issue 12): the ranker's work beside ONNX Runtime at C candidates, numpy against
compiled, interleaved round by round in one process (`docs/serving.md`, round 12).

    taskset -c 0 .venv/bin/python docs/results/issue12_round12/measure.py [ROUNDS] [C]

Needs `make serve`'s artifact (artifacts/default) and the kernels' library (`make kernels`).
Per round, one request of C real KuaiRand candidates (the bundled log's videos) for one user
with a full random history: the response heads (`numpy_heads` against `CompiledHeads`, same
inputs), the default JSON (`CandidateScore.json_array` without and with the compiled
writer) and the request's preparation (N, vocabulary rows, bucket plan), each timed on its own; medians, and the paired ratio compiled / numpy with its
standard error over rounds. The outputs are checked equal (heads within 1e-12, JSON bytes)."""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_service  # noqa: E402

from segint.segments import n_segments  # noqa: E402
from service.history import History  # noqa: E402
from service.ranker import Ranker, bucket_plan, numpy_heads  # noqa: E402
from service.schemas import CandidateScore  # noqa: E402


def prep_numpy(ranker: Ranker, ids: np.ndarray, dur: np.ndarray) -> tuple[np.ndarray, ...]:
    """N, vocabulary rows and the bucket plan's order, as the ranker's numpy path has them."""
    s_max = ranker.manifest.s_max
    nseg = np.clip(n_segments(dur), 1, s_max)
    order, _ = bucket_plan(nseg, s_max, ranker.run_overhead)
    return order, ranker.videos.lookup(ids)


def prep_compiled(ranker: Ranker, ids: np.ndarray, dur: np.ndarray) -> tuple[np.ndarray, ...]:
    assert ranker.heads is not None
    s_max = ranker.manifest.s_max
    nseg, idx = ranker.heads.prepare(ids, dur, ranker.videos.ids, s_max)
    order, _ = ranker.heads.bucket_plan(nseg, s_max, ranker.run_overhead)
    return order, idx


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    ranker = Ranker.load(ROOT / "artifacts" / "default", provider="cpu")
    assert ranker.heads is not None, "the kernels' library is not built: make kernels"
    vids, durs = bench_service.kuairand_videos(ranker.manifest.s_max)
    rng = np.random.default_rng(0)
    h = ranker.manifest.history_len
    history = History.from_views(
        rng.choice(vids, h).tolist(),
        rng.integers(3000, 60000, h).tolist(),
        rng.integers(1, 3000, h).tolist(),
        list(range(h)),
        cap=ranker.history_cap,
    )
    state = ranker.encode_user(1, history)
    table = ranker.video_table
    names = ("heads numpy", "heads compiled", "json python", "json compiled", "prep numpy",
             "prep compiled")  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(rounds):
        pick = rng.choice(len(vids), c, replace=False)
        ids, dur = vids[pick], durs[pick]
        s = ranker.score(1, state, ids, dur)
        idx = ranker.videos.lookup(ids)
        rows = None if table is None else np.where(table.mixed(idx, s.n_segments), idx, -1)
        scaled = None if table is None else table.scaled
        keep = 1.0 if table is None else 1.0 - table.weight
        runs = {
            "heads numpy": partial(
                numpy_heads, s.logits, s.n_segments, dur, ranker.temperature, table, idx
            ),
            "heads compiled": partial(
                ranker.heads, s.logits, s.n_segments, dur, ranker.temperature, scaled, rows, keep
            ),
            "json python": partial(CandidateScore.json_array, ids.tolist(), s, frozenset()),
            "json compiled": partial(
                CandidateScore.json_array, ids.tolist(), s, frozenset(), ranker.heads
            ),
            "prep numpy": partial(prep_numpy, ranker, ids, dur),
            "prep compiled": partial(prep_compiled, ranker, ids, dur),
        }
        out = {}
        for name in list(runs) if i % 2 else list(runs)[::-1]:  # alternate the order
            t0 = time.perf_counter()
            out[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
        a, b = out["heads numpy"], out["heads compiled"]
        np.testing.assert_allclose(b.exit_distribution, a.exit_distribution, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(b.median_watch_ms, a.median_watch_ms)
        assert out["json python"] == out["json compiled"]
        np.testing.assert_array_equal(out["prep numpy"][0], out["prep compiled"][0])
    say(f"C = {c}, {rounds} rounds (ms, median):")
    for name, ts in times.items():
        say(f"  {name:15s} {statistics.median(ts) * 1e3:.3f}")
    for what in ("heads", "json", "prep"):
        base = "python" if what == "json" else "numpy"
        r = np.array(times[f"{what} compiled"]) / np.array(times[f"{what} {base}"])
        se = r.std(ddof=1) / len(r) ** 0.5
        say(f"  {what}: compiled / {base} {r.mean():.3f} +- {se:.3f}")


if __name__ == "__main__":
    main()
