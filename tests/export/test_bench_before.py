"""The bench's ``before`` server serves the same model as today's, in the round-1 scorer form.

`bench.bench_service.before_artifact` copies an artifact and swaps in the round-1 export of the
same weights (`BEFORE_FORM`): the bench's saturation ratio against it is issue 12's ratio
against the path it started from, so the two artifacts must score alike (1e-5, as every
inference form in `tests/export/test_ragged.py`) while the graphs really differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bench.bench_service import before_artifact
from export.manifest import Manifest
from service.history import History
from service.ranker import Ranker
from tests.export.tiny import TINY, tiny_model

S = int(TINY["s_max"])


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_before_artifact_scores_like_the_served_one(self_artifact: Path, tmp_path: Path) -> None:
    before = before_artifact(self_artifact, tiny_model("self"), cache=tmp_path)
    served_m, before_m = Manifest.read(self_artifact), Manifest.read(before)
    assert before_m.fingerprint != served_m.fingerprint  # the scorer file differs
    assert before_m.source["scorer_form"]["softmax"] == "explicit"
    # round 1: an explicit Softmax; the served scorer has none (the deferred softmax)
    assert "Softmax" in op_types(before / "scorer.onnx")
    assert "Softmax" not in op_types(self_artifact / "scorer.onnx")

    served, old = Ranker.load(self_artifact, provider="cpu"), Ranker.load(before, provider="cpu")
    old.ragged_enabled = False  # the before server: one padded run of S slots
    history = History.from_views([3, 5, 7], [9000, 20000, 4000], [4000, 20000, 1000], [1, 2, 3], 4)
    rng = np.random.default_rng(0)
    n = np.array([1, S, 3, 7, 2, S - 1, 5, 1, 4])  # odd mix, N = 1 and N = S
    durations = n * 5000 - rng.integers(1, 5000, len(n))  # N segments each
    videos = rng.integers(0, 40, len(n))  # some unknown
    got = {
        name: r.score(7, r.encode_user(7, history), videos, durations)
        for name, r in (("served", served), ("before", old))
    }
    for i, k in enumerate(n):
        real = slice(0, min(int(k) + 1, S))
        np.testing.assert_allclose(
            got["before"].logits[i, real], got["served"].logits[i, real], atol=1e-5, rtol=1e-5
        )
    np.testing.assert_allclose(
        got["before"].expected_watch_ms, got["served"].expected_watch_ms, rtol=1e-5
    )
