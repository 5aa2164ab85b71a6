"""The compiled response heads (`service.kernels.heads`, heads.cpp in the kernels' library)
against the ranker's numpy path (`service.ranker.numpy_heads`): same distribution, slots and
watch times on every candidate shape the service meets."""

from __future__ import annotations

import ctypes.util
import logging

import numpy as np
import pytest

from segint.segments import n_segments
from segint.video_table import VideoTable
from service import kernels
from service.kernels.heads import CompiledHeads, Heads
from service.ranker import _load_heads, numpy_heads

S = 40


@pytest.fixture(scope="module")
def compiled() -> CompiledHeads:
    lib = kernels.library()
    assert lib is not None, f"{kernels.LIBRARY} is not built: run `make kernels`"
    return CompiledHeads(lib)


def _request(c: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logits (C, S) float32 and durations: whole segments, a ms over, one ms, past S slots."""
    rng = np.random.default_rng(seed)
    dur = rng.integers(1, 260_000, c)
    edge = [1, 4_999, 5_000, 5_001, 195_000, 200_000, 200_001, 250_000]
    dur[: min(c, len(edge))] = edge[: min(c, len(edge))]
    nseg = np.clip(n_segments(dur), 1, S)
    logits = rng.normal(0.0, 2.0, (c, S)).astype(np.float32)
    video_idx = rng.integers(0, 60, c)  # 0: unknown video
    return logits, nseg, dur, video_idx


def _table(seed: int) -> VideoTable:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, S + 1, 50)
    dist = rng.random((50, S)) * (np.arange(S)[None, :] <= n[:, None])
    return VideoTable(dist=dist / dist.sum(1, keepdims=True), n_segments=n, weight=0.3)


def _assert_same(got: Heads, want: Heads) -> None:
    np.testing.assert_allclose(
        got.exit_distribution, want.exit_distribution, rtol=1e-12, atol=1e-15
    )
    np.testing.assert_array_equal(got.predicted_exit_slot, want.predicted_exit_slot)
    np.testing.assert_allclose(got.expected_watch_ms, want.expected_watch_ms, rtol=1e-12)
    np.testing.assert_allclose(
        got.completion_probability, want.completion_probability, rtol=1e-12, atol=1e-15
    )
    np.testing.assert_array_equal(got.median_watch_ms, want.median_watch_ms)


@pytest.mark.parametrize("with_table", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 1.37])
@pytest.mark.parametrize("c", [0, 1, 7, 500])
def test_the_compiled_heads_answer_as_numpy(
    compiled: CompiledHeads, c: int, temperature: float, with_table: bool
) -> None:
    logits, nseg, dur, video_idx = _request(c, seed=c)
    table = _table(1) if with_table else None
    want = numpy_heads(logits, nseg, dur, temperature, table, video_idx)
    rows, keep = None, 1.0
    if table is not None:
        rows = np.where(table.mixed(video_idx, nseg), video_idx, -1)
        keep = 1.0 - table.weight
        assert c < 100 or (rows >= 0).any(), "no candidate takes the table"
    got = compiled(
        logits, nseg, dur, temperature, None if table is None else table.scaled, rows, keep
    )
    _assert_same(got, want)
    if c:
        full = nseg == S  # no completion slot: N = S videos
        assert (got.completion_probability[full] == 0).all()
        np.testing.assert_allclose(got.exit_distribution.sum(1), 1.0, rtol=1e-12)


def test_ties_and_extreme_logits(compiled: CompiledHeads) -> None:
    """Equal logits (the median sits on an exact cumulative 1/2), very large and very small
    ones (no overflow: the softmax subtracts the row's maximum)."""
    nseg = np.array([1, 3, 9, S, 2])
    dur = nseg * 5_000 - 1_000
    logits = np.zeros((5, S), dtype=np.float32)
    logits[2] = 80.0
    logits[3, ::2] = -80.0
    logits[4, 0] = 3e38
    want = numpy_heads(logits, nseg, dur, 1.0, None, np.zeros(5, dtype=np.int64))
    got = compiled(logits, nseg, dur, 1.0)
    _assert_same(got, want)
    assert got.median_watch_ms[0] == 2_500  # two outcomes of 1/2: the first reaches 1/2


def test_bad_shapes_are_refused(compiled: CompiledHeads) -> None:
    logits, nseg, dur, _ = _request(4, seed=0)
    with pytest.raises(ValueError, match="N in 1..40"):
        compiled(logits, nseg * 0, dur, 1.0)
    with pytest.raises(ValueError, match="N in 1..40"):
        compiled(logits, nseg[:3], dur, 1.0)
    with pytest.raises(ValueError, match="table rows out of range"):
        compiled(logits, nseg, dur, 1.0, _table(0).scaled, np.array([0, 1, 2, 50]), 0.7)
    with pytest.raises(ValueError, match="not \\(C, S\\)"):
        compiled(logits[0], nseg, dur, 1.0)


def test_float32_values_are_written_as_orjson_writes_them(compiled: CompiledHeads) -> None:
    """`segint_format_f32` against orjson on uniform and tiny probabilities, random bit
    patterns over the whole float32 range, powers of ten, signed zeros, NaN and infinities."""
    import orjson

    fmt = ctypes.CDLL(str(kernels.LIBRARY)).segint_format_f32
    fmt.argtypes, fmt.restype = [ctypes.c_float, ctypes.c_char_p], ctypes.c_int64
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.random(20_000).astype(np.float32),
            (rng.random(20_000) ** 8).astype(np.float32),  # down to ~1e-30
            rng.integers(0, 0x7F800000, 40_000, dtype=np.uint32).view(np.float32),
            np.float32(10.0) ** np.arange(-45, 39, dtype=np.float32),
            np.array([0.0, -0.0, 1.0, 1e-6, 1e-7, 123456.0, 1e13, np.nan, np.inf, -np.inf]),
        ]
    ).astype(np.float32)
    values = np.concatenate([values, -values[:1000]])
    want = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    buf = ctypes.create_string_buffer(64)

    def text(v: np.float32) -> bytes:
        n = fmt(float(v), buf)
        return buf.raw[:n]

    got = [text(v) for v in values]
    bad = [(float(v), g, w) for v, g, w in zip(values, got, want, strict=True) if g != w]
    assert not bad, bad[:5]


def test_the_compiled_writer_leaves_huge_watch_times_to_python(compiled: CompiledHeads) -> None:
    """Watch times the service's duration limit excludes (2**53 ms and more): None, so the
    column-wise writer answers; columns of different lengths are an error."""
    ones = np.ones(2)
    args = ([1, 2], np.zeros(2, bool), np.ones(2, np.int64), np.ones(2, np.int64), ones)
    assert compiled.candidates_json(*args, ones * 2.0**53, ones, None) is None
    assert compiled.candidates_json(*args, ones, ones, None) is not None
    with pytest.raises(ValueError, match="different lengths"):
        compiled.candidates_json(*args, ones, ones[:1], None)


def test_the_compiled_preparation_is_numpys(compiled: CompiledHeads) -> None:
    """N clipped to 1..S and the vocabulary rows, for durations from 1 ms past S slots and
    ids in and out of the vocabulary (0 and 2**53 - 1 among them)."""
    from segint.vocab import Vocab

    rng = np.random.default_rng(5)
    vocab = Vocab(rng.choice(10_000, 3_000, replace=False))
    for c in (0, 1, 9, 1_000):
        ids = rng.integers(0, 10_010, c)
        ids[: min(c, 2)] = [0, 2**53 - 1][: min(c, 2)]
        dur = rng.integers(1, 300_000, c)
        dur[: min(c, 4)] = [1, 5_000, 5_001, 200_000][: min(c, 4)]
        nseg, idx = compiled.prepare(ids, dur, vocab.ids, S)
        np.testing.assert_array_equal(nseg, np.clip(n_segments(dur), 1, S))
        np.testing.assert_array_equal(idx, vocab.lookup(ids))
    with pytest.raises(ValueError, match="different shapes"):
        compiled.prepare(np.zeros(3, np.int64), np.ones(2, np.int64), vocab.ids, S)


def _cost(runs: list[tuple[int, int, int]], overhead: int) -> int:
    return sum(overhead + (stop - start) * width for start, stop, width in runs)


@pytest.mark.parametrize("overhead", [0, 64, 128, 10**6])
def test_the_compiled_bucket_plan_costs_what_the_python_plan_costs(
    compiled: CompiledHeads, overhead: int
) -> None:
    """The same candidate order, a plan of the same least cost that covers every candidate
    once in contiguous runs at least as wide as each one's need (C = 0, one N, all N)."""
    from service.ranker import bucket_plan

    rng = np.random.default_rng(overhead)
    cases = [np.array([], dtype=np.int64), np.full(7, 3), np.arange(1, S + 1)]
    cases += [rng.integers(1, S + 1, c) for c in (1, 2, 50, 500, 1_000)]
    cases += [np.clip(rng.geometric(0.1, 500), 1, S)]  # KuaiRand-like: short videos dominate
    for nseg in cases:
        order, runs = compiled.bucket_plan(nseg, S, overhead)
        want_order, want_runs = bucket_plan(nseg, S, overhead)
        np.testing.assert_array_equal(order, want_order)
        assert _cost(runs, overhead) == _cost(want_runs, overhead)
        need = np.minimum(nseg + 1, S)[order]
        assert [r[0] for r in runs] == [0, *[r[1] for r in runs[:-1]]][: len(runs)]
        assert (runs[-1][1] if runs else 0) == len(nseg)
        for start, stop, width in runs:
            assert start < stop and need[start:stop].max() == width
    with pytest.raises(ValueError, match="N in 1..40"):
        compiled.bucket_plan(np.array([0, 3]), S, 64)


def test_a_library_without_the_heads_leaves_them_to_numpy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A library built before heads.cpp (here: libm, which has no segint_score_heads): one
    log line and numpy."""
    libm = ctypes.util.find_library("m")
    assert libm is not None
    path = next(p for p in ("/lib/x86_64-linux-gnu/" + libm, "/usr/lib/x86_64-linux-gnu/" + libm)
                if __import__("os").path.exists(p))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="service.ranker"):
        assert _load_heads(path) is None
    assert "response heads" in caplog.text and "numpy computes them" in caplog.text
    assert _load_heads(kernels.LIBRARY.parent / "missing.so") is None
