"""The per-candidate heads of a scored request and its default JSON, compiled (``heads.cpp``
and ``response.cpp`` in the kernels' library, called through ctypes; docs/serving.md, round 12).

`CompiledHeads.__call__`: one pass over the (C, S) logits instead of about twenty numpy
operations on (C, S) arrays; the same values as the ranker's numpy path
(`service.ranker.numpy_heads`) within a few units in the last place (the same float64
operations, sums possibly in another order).

`CompiledHeads.candidates_json`: the default ``candidates`` array of a /score answer in one
pass, the same bytes as `service.schemas.CandidateScore.json_array` (orjson's float32 form)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_P = ctypes.c_void_p  # every array is passed as its data pointer, checked here first


@dataclass(frozen=True)
class Heads:
    """What `CompiledHeads` returns: (C, S) and (C,) arrays."""

    exit_distribution: npt.NDArray[np.float64]
    predicted_exit_slot: npt.NDArray[np.int64]
    expected_watch_ms: npt.NDArray[np.float64]
    completion_probability: npt.NDArray[np.float64]
    median_watch_ms: npt.NDArray[np.float64]


class CompiledHeads:
    """The compiled functions of the library at ``path`` (an OSError when it does not load,
    an AttributeError when it lacks one: a library built before them)."""

    def __init__(self, path: str | Path) -> None:
        dll = ctypes.CDLL(str(path))
        fn = dll.segint_score_heads
        fn.restype = None
        fn.argtypes = [
            ctypes.c_int64, ctypes.c_int64, _P, _P, _P, ctypes.c_double, _P, _P,
            ctypes.c_double, _P, _P, _P, _P, _P,
        ]  # fmt: skip
        self._fn = fn
        js = dll.segint_candidates_json
        js.restype, js.argtypes = ctypes.c_int64, [ctypes.c_int64, *([_P] * 9)]
        self._json = js
        bound = dll.segint_candidates_bound
        bound.restype, bound.argtypes = ctypes.c_int64, [ctypes.c_int64]
        self._bound = bound
        prepare = dll.segint_prepare
        prepare.restype, prepare.argtypes = None, [ctypes.c_int64, ctypes.c_int64, _P, _P, _P,
                                                   ctypes.c_int64, _P, _P]  # fmt: skip
        self._prepare = prepare
        plan = dll.segint_bucket_plan
        plan.restype = ctypes.c_int64
        plan.argtypes = [ctypes.c_int64, ctypes.c_int64, _P, ctypes.c_int64, _P, _P]
        self._plan = plan

    def prepare(
        self, video_ids: npt.NDArray[np.int64], duration_ms: npt.NDArray[np.int64],
        vocab: npt.NDArray[np.int64], s_max: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:  # fmt: skip
        """(N clipped to 1..S, vocabulary rows) of the candidates: `segint.segments.n_segments`
        clipped and `segint.vocab.Vocab.lookup` (``vocab``: its sorted ids) in one pass."""
        ids = np.ascontiguousarray(video_ids, dtype=np.int64)
        dur = np.ascontiguousarray(duration_ms, dtype=np.int64)
        voc = np.ascontiguousarray(vocab, dtype=np.int64)
        if ids.shape != dur.shape or ids.ndim != 1:
            raise ValueError("prepare: video ids and durations of different shapes")
        nseg, idx = np.empty(len(ids), dtype=np.int64), np.empty(len(ids), dtype=np.int64)
        self._prepare(
            len(ids), s_max, ids.ctypes.data, dur.ctypes.data, voc.ctypes.data, len(voc),
            nseg.ctypes.data, idx.ctypes.data,
        )  # fmt: skip
        return nseg, idx

    def bucket_plan(
        self, n_segments: npt.NDArray[np.int64], s_max: int, run_overhead: int
    ) -> tuple[npt.NDArray[np.int64], list[tuple[int, int, int]]]:
        """`service.ranker.bucket_plan` compiled: the same order and a plan of the same least
        cost (``n_segments`` in 1..S)."""
        nseg = np.ascontiguousarray(n_segments, dtype=np.int64)
        if len(nseg) and (nseg.min() < 1 or nseg.max() > s_max):
            raise ValueError(f"bucket_plan: N in 1..{s_max} needed")
        order = np.empty(len(nseg), dtype=np.int64)
        runs = np.empty((s_max + 1, 3), dtype=np.int64)
        n = self._plan(
            len(nseg), s_max, nseg.ctypes.data, run_overhead, order.ctypes.data, runs.ctypes.data
        )
        return order, [(int(a), int(b), int(w)) for a, b, w in runs[:n].tolist()]

    def __call__(
        self,
        logits: npt.NDArray[np.float32],
        n_segments: npt.NDArray[np.int64],
        duration_ms: npt.NDArray[np.int64],
        temperature: float,
        table: npt.NDArray[np.float64] | None = None,
        table_row: npt.NDArray[np.int64] | None = None,
        keep: float = 1.0,
    ) -> Heads:
        """Heads of ``logits`` (C, S) for candidates with ``n_segments`` in 1..S and
        ``duration_ms`` >= 1; with ``table`` (V, S: the video table's ``w * dist``), row
        ``table_row[i]`` (-1: none) is mixed into candidate i's distribution as
        ``keep * dist + table[row]``."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.ndim != 2:
            raise ValueError(f"heads: logits of shape {logits.shape}, not (C, S)")
        c, s = logits.shape
        nseg = np.ascontiguousarray(n_segments, dtype=np.int64)
        dur = np.ascontiguousarray(duration_ms, dtype=np.int64)
        if not (len(nseg) == len(dur) == c and (c == 0 or (nseg.min() >= 1 and nseg.max() <= s))):
            raise ValueError(f"heads: {c} candidates with N in 1..{s} needed")
        if table is None or table_row is None:
            table, rows = None, np.full(c, -1, dtype=np.int64)
        else:
            table = np.ascontiguousarray(table, dtype=np.float64)
            rows = np.ascontiguousarray(table_row, dtype=np.int64)
            if table.shape[1:] != (s,) or rows.shape != (c,) or rows.max(initial=-1) >= len(table):
                raise ValueError("heads: table rows out of range")
        dist = np.empty((c, s), dtype=np.float64)
        pred = np.empty(c, dtype=np.int64)
        expected, completion, median = (np.empty(c, dtype=np.float64) for _ in range(3))
        self._fn(
            c, s, logits.ctypes.data, nseg.ctypes.data, dur.ctypes.data, float(temperature),
            None if table is None else table.ctypes.data, rows.ctypes.data, float(keep),
            dist.ctypes.data, pred.ctypes.data, expected.ctypes.data, completion.ctypes.data,
            median.ctypes.data,
        )  # fmt: skip
        return Heads(dist, pred, expected, completion, median)

    def candidates_json(
        self,
        video_ids: npt.ArrayLike,
        video_unknown: npt.NDArray[np.bool_],
        n_segments: npt.NDArray[np.int64],
        predicted_exit_slot: npt.NDArray[np.int64],
        completion_probability: npt.NDArray[np.float64],
        expected_watch_ms: npt.NDArray[np.float64],
        median_watch_ms: npt.NDArray[np.float64],
        ctr: npt.NDArray[np.float64] | None,
    ) -> bytes | None:
        """The JSON array of the candidates' default `CandidateScore` fields (``ctr`` unless
        None); None where the writer does not apply (a watch time of 2**53 ms or more, which
        the service's duration limit excludes): the caller writes it then."""
        ids = np.ascontiguousarray(video_ids, dtype=np.int64)
        c = len(ids)
        unknown = np.ascontiguousarray(video_unknown, dtype=np.uint8)
        ints = [np.ascontiguousarray(a, dtype=np.int64) for a in (n_segments, predicted_exit_slot)]
        floats = [
            np.ascontiguousarray(a, dtype=np.float64)
            for a in (completion_probability, expected_watch_ms, median_watch_ms)
        ]
        ctr64 = None if ctr is None else np.ascontiguousarray(ctr, dtype=np.float64)
        lengths = {len(unknown), *map(len, ints), *map(len, floats)}
        if lengths - {c} or (ctr64 is not None and len(ctr64) != c):
            raise ValueError("candidates_json: columns of different lengths")
        if c and not (np.abs(floats[1]).max() < 2.0**53 and np.abs(floats[2]).max() < 2.0**53):
            return None
        out = np.empty(self._bound(c), dtype=np.uint8)
        n = self._json(
            c, ids.ctypes.data, unknown.ctypes.data, ints[0].ctypes.data, ints[1].ctypes.data,
            floats[0].ctypes.data, floats[1].ctypes.data, floats[2].ctypes.data,
            None if ctr64 is None else ctr64.ctypes.data, out.ctypes.data,
        )  # fmt: skip
        return out[:n].tobytes()
