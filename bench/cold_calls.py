"""Why the handler's own work costs more in the server than in a loop: the first numpy call
after a pause or after the scorer runs is many times slower than the same call repeated.

For each "gap" (nothing; a pure-Python loop of about 10 ms; a 20 ms sleep; the ragged scorer
runs of 500 real KuaiRand candidates, the base model as in `bench/bench_service.py`), the
script runs the gap, then times three calls in a row of one step of `Ranker.score`'s own work
(a one-id vocabulary lookup; the calibrated exit distribution of 500 candidates), and reports
the median over rounds of the first, second and third call.

Run: ``.venv/bin/python bench/cold_calls.py [--rounds 40]`` (under a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import base_artifact, kuairand_videos  # noqa: E402


def python_loop() -> None:
    for _ in range(400_000):
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()

    from segint import watchtime
    from segint.segments import n_segments
    from service.ranker import Ranker

    artifact, _ = base_artifact()
    ranker = Ranker.load(artifact, provider="cpu")
    s_max = ranker.manifest.s_max
    ids, durations = kuairand_videos(s_max)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ids), 500, replace=False)
    nseg = np.clip(n_segments(durations[pick]), 1, s_max)
    user = ranker.encode_user(1, _history(ids, rng, ranker.history_cap))
    assert user.states is not None and user.mask is not None
    feeds = {
        "video_ids": ranker.videos.lookup(ids[pick]),
        "n_segments": nseg,
        "user_states": user.states[None],
        "user_mask": user.mask[None],
    }
    logits = ranker._score_ragged(feeds, nseg, None)
    steps = {
        "vocabulary lookup, 1 id": lambda: ranker.users.lookup([1]),
        "exit distribution, 500 x 40": lambda: watchtime.calibrated_exit_distribution(
            logits, nseg, ranker.temperature
        ),
    }
    gaps = {
        "none": lambda: None,
        "python loop ~10 ms": python_loop,
        "sleep 20 ms": lambda: time.sleep(0.02),
        "scorer runs, 500 candidates": lambda: ranker._score_ragged(feeds, nseg, None),
    }
    print("| gap | step | 1st call us | 2nd | 3rd |\n|---|---|---|---|---|")
    for gap_name, gap in gaps.items():
        for step_name, step in steps.items():
            times = np.zeros((args.rounds, 3))
            for r in range(args.rounds):
                gap()
                for k in range(3):
                    t0 = time.perf_counter()
                    step()
                    times[r, k] = (time.perf_counter() - t0) * 1e6
            med = np.median(times, axis=0)
            print(f"| {gap_name} | {step_name} | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} |")
    return 0


def _history(ids: np.ndarray, rng: np.random.Generator, cap: int) -> Any:
    from service.history import History

    n = min(cap, 20)
    return History.from_views(
        rng.choice(ids, n), np.full(n, 30_000), rng.integers(1_000, 30_000, n), np.arange(n), cap
    )


if __name__ == "__main__":
    sys.exit(main())
