"""The ranker's ragged scoring (length buckets, request order restored) equals its padded run.

A real ONNX Runtime session on the tiny artifacts. ``Ranker.ragged_enabled = False`` is the
padded path (one scorer run over all S slots), the reference here; tolerance 1e-5 as in
`tests/export/test_ragged.py`. The CTR head reads the scorer's logits, so its output is
compared as well (1e-6, `tests/service/reference.CTR_ATOL`).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import helper, numpy_helper

from export.manifest import GraphSpec, Manifest, TensorSpec, files_fingerprint
from service.app import create_app
from service.history import History
from service.ranker import Ranker, Scores
from service.settings import Settings
from tests.service.reference import CTR_ATOL, score_body

ATOL = RTOL = 1e-5
S = 7


def history() -> History:
    return History.from_views(
        [1004, 1010, 77], [20000, 6000, 30000], [9000, 6000, 100], [300, 200, 100], cap=5
    )


def both(
    ranker: Ranker, vids: np.ndarray, dur: np.ndarray, user: int = 103
) -> tuple[Scores, Scores]:
    state = ranker.encode_user(user, history())
    ranker.ragged_enabled = True
    ragged = ranker.score(user, state, vids, dur)
    ranker.ragged_enabled = False
    try:
        padded = ranker.score(user, state, vids, dur)
    finally:
        ranker.ragged_enabled = True
    return ragged, padded


def durations(n: list[int] | np.ndarray) -> np.ndarray:
    """A duration with exactly N segments for each N (5 s per segment, last one partial)."""
    return np.asarray(n, dtype=np.int64) * 5000 - 1700


CASES = {
    "odd_mix": [3, 1, 7, 2, 6, 2, 5, 1, 4],
    "single": [4],
    "single_full": [S],
    "all_one": [1] * 5,
    "thousand": np.random.default_rng(0).integers(1, S + 1, 1000),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("artifact", ["self_artifact", "ctr_artifact"])
def test_ragged_ranker_matches_padded(
    case: str, artifact: str, request: pytest.FixtureRequest
) -> None:
    """Every head on every candidate, in request order: logits on the real slots, the exit
    distribution, expected watch time, completion, the CTR, the cold flags."""
    ranker = Ranker.load(request.getfixturevalue(artifact), provider="cpu")
    assert ranker.ragged
    n = np.asarray(CASES[case])
    rng = np.random.default_rng(len(n))
    vids = rng.integers(998, 1030, len(n))  # some unknown ids
    ragged, padded = both(ranker, vids, durations(n))
    np.testing.assert_array_equal(ragged.n_segments, n)
    for i, k in enumerate(n):
        m = min(int(k) + 1, S)
        np.testing.assert_allclose(ragged.logits[i, :m], padded.logits[i, :m], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(ragged.exit_distribution, padded.exit_distribution, atol=1e-6)
    np.testing.assert_allclose(
        ragged.completion_probability, padded.completion_probability, atol=1e-6
    )
    np.testing.assert_allclose(ragged.expected_watch_ms, padded.expected_watch_ms, rtol=1e-6)
    np.testing.assert_array_equal(ragged.predicted_exit_slot, padded.predicted_exit_slot)
    np.testing.assert_array_equal(ragged.video_unknown, padded.video_unknown)
    if ragged.ctr is not None or padded.ctr is not None:
        assert ragged.ctr is not None and padded.ctr is not None
        np.testing.assert_allclose(ragged.ctr, padded.ctr, atol=CTR_ATOL)


def test_a_scorer_without_slot_index_is_scored_padded(self_artifact: Path, tmp_path: Path) -> None:
    """An artifact exported before ragged scoring (scorer without ``slot_index``) still loads
    and scores, in one padded run: the graph's slot_index input replaced by a constant 0..S-1."""
    old = tmp_path / "old"
    shutil.copytree(self_artifact, old)
    model = onnx.load(str(old / "scorer.onnx"))
    graph = model.graph
    kept = [i for i in graph.input if i.name != "slot_index"]
    del graph.input[:]
    graph.input.extend(kept)
    graph.node.insert(
        0,
        helper.make_node(
            "Constant",
            [],
            ["slot_index"],
            value=numpy_helper.from_array(np.arange(S, dtype=np.int64)),
        ),
    )
    for out in graph.output:  # logits (candidates, S) as before
        out.type.tensor_type.shape.dim[1].ClearField("dim_param")
        out.type.tensor_type.shape.dim[1].dim_value = S
    onnx.save(model, str(old / "scorer.onnx"))
    m = Manifest.read(old)
    spec = m.graphs["scorer"]
    graphs = m.graphs | {
        "scorer": GraphSpec(
            spec.file,
            tuple(i for i in spec.inputs if i.name != "slot_index"),
            (TensorSpec("logits", "float32", ("candidates", S)),),
        )
    }
    files = [old / graphs[g].file for g in sorted(graphs)]
    dataclasses.replace(m, graphs=graphs, fingerprint=files_fingerprint(files)).write(old)
    legacy = Ranker.load(old, provider="cpu")
    assert not legacy.ragged
    current = Ranker.load(self_artifact, provider="cpu")
    n = np.array([3, 1, 7, 2])
    vids = np.array([1001, 1002, 999, 1003])
    want, _ = both(current, vids, durations(n))
    got = legacy.score(103, legacy.encode_user(103, history()), vids, durations(n))
    for i, k in enumerate(n):
        m_ = min(int(k) + 1, S)
        np.testing.assert_allclose(got.logits[i, :m_], want.logits[i, :m_], atol=ATOL, rtol=RTOL)


def test_the_ragged_scoring_setting_gives_the_same_answers(
    make_settings: Callable[..., Settings],
) -> None:
    """SEGINT_RAGGED_SCORING=false serves the padded path: same heads and arrays over HTTP."""
    n = [3, 1, 7, 2, 6, 5]
    body = score_body(103, [(1000 + i, int(d)) for i, d in enumerate(durations(n))])
    answers = []
    for ragged in (True, False):
        with TestClient(create_app(make_settings(ragged_scoring=ragged))) as client:
            r = client.post("/score", json=body)
            assert r.status_code == 200, r.text
            answers.append(r.json()["candidates"])
    for a, b in zip(*answers, strict=True):
        assert a["n_segments"] == b["n_segments"]
        np.testing.assert_allclose(a["segment_scores"], b["segment_scores"], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(a["exit_distribution"], b["exit_distribution"], atol=1e-6)
        assert a["expected_watch_ms"] == pytest.approx(b["expected_watch_ms"], rel=1e-6)


def test_the_rankers_expected_watch_time_is_the_heads_rule() -> None:
    """`service.ranker.expected_watch_ms` (a matrix-vector product and two corrections) equals
    `segint.heads.expected_watch_ms` on distributions with no mass beyond N = min(ceil(d / 5 s),
    S), for durations at every edge: 0 and 1 ms, a segment boundary and either side of it, S
    segments exactly and either side, far longer than S segments."""
    from segint import heads
    from segint.segments import SEGMENT_MS
    from segint.watchtime import calibrated_exit_distribution
    from service.ranker import expected_watch_ms

    s = 40
    rng = np.random.default_rng(11)
    edges = [0, 1, SEGMENT_MS - 1, SEGMENT_MS, SEGMENT_MS + 1, 12_300]
    edges += [s * SEGMENT_MS - 1, s * SEGMENT_MS, s * SEGMENT_MS + 1, 10**6]
    dur = np.concatenate([edges, rng.integers(1, 250_000, 300)]).astype(np.int64)
    nseg = np.clip(-(-dur // SEGMENT_MS), 1, s)
    logits = (rng.normal(size=(len(dur), s)) * 2).astype(np.float32)
    dist = calibrated_exit_distribution(logits, nseg, 1.3)
    want = heads.expected_watch_ms(dist, dur)
    got = expected_watch_ms(dist, dur)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
