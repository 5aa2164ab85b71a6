"""The Ranker: ONNX Runtime sessions of an artifact, with numpy pre- and post-processing.

No FastAPI here and no torch: the ranker maps raw ids and durations to the graph feeds named
in the manifest, runs one session per graph, and turns logits into the serving heads of
`segint.heads`. Content models get their ``hist_content`` / ``video_content`` feeds from a
segment feature store (`service.content`); an artifact with a SegRec CTR head also gets the
head's ``ctr`` per candidate (`service.ctr`), from one more run over all candidates. Its
methods block (``session.run``); the web layer calls them in a worker thread, which is safe
because ``InferenceSession.run`` is thread-safe and releases the GIL.

Ragged scoring (self stream, a scorer with a ``slot_index`` input): candidates are grouped
by their segment count into a few runs, each on only the slots its candidates have
(`buckets`), and the logits are put back in request order; the result equals one padded run
on every real slot and outcome.

Precision: the scorer runs in fp32 (the exported graph) or in its dynamic int8 form
(``scorer.int8.onnx``, listed in the manifest's ``precisions``), as ``Ranker.load``'s
``precision`` picks; the user encoder and the other graphs always run as exported (fp32).

Kernel: on CPU, an fp32 scorer runs from ``scorer.kernel.onnx`` (the same graph with each video
block as one ``segint.VideoBlock`` node, `export.kernel`) when the artifact has it and the
custom-operator library of `service.kernels` is built and runs on this CPU; ``kernel="off"``
or anything missing keeps ``scorer.onnx``.

Notation: ``C`` candidates, ``h`` real history views, ``H = max(h, 1)`` history columns fed
to the graph (never 0, as in training's collate), ``S`` = s_max slots, ``M = 1 + H`` user
tokens, ``n_mod`` modalities, ``L`` layers, ``d`` token width.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from export.contract import (
    CONTENT_INPUTS,
    CUT_SLOT_LOGIT,
    FP32,
    INT8,
    INT8_FILES,
    KERNEL,
    KNOWN_INPUTS,
    SCORER,
)
from export.manifest import ArtifactError, Manifest, VariantSpec, file_sha256
from segint import heads, watchtime
from segint.errors import SegintError
from segint.segments import SEGMENT_MS
from segint.segments import n_segments as count_segments
from segint.video_table import VideoTable
from segint.vocab import UNKNOWN, Vocab
from service import kernels, metrics
from service.content import ContentFeatures
from service.ctr import CtrHead
from service.history import History, UserState, history_feeds
from service.kernels.heads import CompiledHeads, Heads

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# Ragged scoring: the cost of one extra scorer run, in candidate-slots (see `buckets`). Chosen
# on the base model, 500 KuaiRand candidates, 1 ORT thread (results do not depend on it): runs
# of 64, 150, 300, 600 and 1,500 slots' overhead gave 14, 8, 6, 4 and 3 runs, and the most
# runs was fastest (attention is quadratic in a run's width, a run's fixed cost is small).
# Round 3 (ORT + the ranker's own work per request): 32, 128 and 256 tie with 64.
RUN_OVERHEAD_SLOTS = 64
# With the video-block kernel a run's width costs little: its attention reads each candidate's
# valid keys only, and since round 13 it computes each candidate's own rows only (keys and
# completion slot; the rows past them are neither keys nor outcomes), so padding costs only the
# graph's small per-slot operators and fewer, wider runs pay. Round 13, base model, 1 ORT
# thread, 40 interleaved rounds of real KuaiRand candidates (the bundled log's videos, no
# model's test rows; docs/results/issue12_round13/overhead.py), ORT stage against 128: 512
# 0.897 +- 0.014 (C = 100, 2 runs instead of 4) and 0.974 +- 0.014 (C = 500, 4.3 instead of
# 8.4); 1,024 ties 512, 64 loses (1.05, 1.04), one run per request loses at C = 500 (1.08).
KERNEL_RUN_OVERHEAD_SLOTS = 512
# ORT graph transformers left out of every session (level ALL otherwise). ORT's fused
# SkipLayerNormalization kernel is slower than the Add + LayerNormalization it replaces on our
# d = 32 rows: scorer, 500 KuaiRand candidates, 1 thread, interleaved in one process on a
# loaded 2-core machine, time ratio 0.857 +- 0.017 with the fusion off (bench/bench_service.py,
# lever fp32_skipln_fusion). On the round-3 scorer (2-D token rows) the fusion ties (1.005 +-
# 0.044 at C = 500); it stays off.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
# Every input a ragged scorer run may take (`Ranker._score_ragged` feeds these only).
RAGGED_INPUTS = frozenset(
    {"user_states", "user_mask", "video_ids", "n_segments", "slot_index", "video_content"}
)
# `Ranker.load`'s precision: fp32, int8, or auto (int8 when the artifact has it, on CPU).
AUTO = "auto"
PRECISION_CHOICES = (AUTO, FP32, INT8)
KERNEL_CHOICES = (AUTO, "off")  # `Ranker.load`'s kernel


@dataclass
class Timings:
    """Seconds spent per stage of one request (filled in by the ranker and the cache layer)."""

    ort_s: float = 0.0
    queue_s: float = 0.0  # waiting for an inference slot (`Shedder`)
    cache_s: float = 0.0
    # an inference call's thread hand-offs: from its submission to the thread starting it,
    # and from its end to the request's coroutine running again (both wait for a CPU and
    # the event loop, no work of this request's)
    handoff_s: float = 0.0


@dataclass(frozen=True)
class Scores:
    """Per-candidate outputs of one scorer run; arrays have C rows."""

    logits: npt.NDArray[np.float32]  # (C, S) interest per slot, higher = more interest
    n_segments: IntArray  # (C,) N of each candidate, 1..S
    exit_distribution: npt.NDArray[np.float64]  # (C, S) over outcomes 0..N, 0 elsewhere
    predicted_exit_slot: IntArray  # (C,) 0..N (N = watched to the end)
    expected_watch_ms: npt.NDArray[np.float64]  # (C,) mean of the exit distribution
    completion_probability: npt.NDArray[np.float64]  # (C,)
    median_watch_ms: npt.NDArray[np.float64]  # (C,) the served estimate (segint.watchtime)
    video_unknown: npt.NDArray[np.bool_]  # (C,) video not in the training vocabulary
    user_unknown: bool
    ctr: npt.NDArray[np.float64] | None = None  # (C,) SegRec CTR; None without a CTR head
    extra: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)  # other outputs


class Ranker:
    """Scores candidates for one user with the exported graphs of one artifact."""

    def __init__(
        self,
        manifest: Manifest,
        sessions: dict[str, ort.InferenceSession],
        users: Vocab,
        videos: Vocab,
        content: ContentFeatures | None = None,
        ctr: CtrHead | None = None,
        precision: str = FP32,
        video_table: VideoTable | None = None,
        kernel: bool = False,
        heads: CompiledHeads | None = None,
    ) -> None:
        self.manifest = manifest
        self.precision = precision  # the scorer's, as served: fp32 or int8
        self.kernel = kernel  # the scorer runs from scorer.kernel.onnx (segint.VideoBlock)
        self.heads = heads  # the response heads compiled (service.kernels.heads); None: numpy
        self.sessions = sessions
        self.users = users
        self.videos = videos
        self.content = content
        self.ctr = ctr
        self.temperature = watchtime.manifest_temperature(manifest.watch_time)
        self.video_table = video_table  # mixed into the exit distribution (segint.video_table)
        self.provider = next(iter(sessions.values())).get_providers()[0]
        # 8 bytes stamping every cached blob with its producer: the graphs' sha256 and, for a
        # content model, the feature-store snapshot the user states were computed from.
        fingerprint = bytes.fromhex(manifest.fingerprint[:16])
        if content is not None:
            fingerprint = hashlib.sha256(fingerprint + content.identity).digest()[:8]
        self.fingerprint = fingerprint
        # Views kept per user: what the interest model and the CTR head's history look at.
        self.history_cap = max(manifest.history_len, ctr.spec.history_len if ctr else 0)
        if (ctr is None) != ("ctr" not in sessions):
            raise ArtifactError("a CTR head needs both its session and its manifest entry")
        for name, session in sessions.items():
            spec = manifest.graph(name)
            got = [i.name for i in session.get_inputs()]
            unknown = sorted(set(got) - KNOWN_INPUTS)
            if unknown:
                raise ArtifactError(f"{spec.file} needs inputs the service cannot build: {unknown}")
            if content is None and CONTENT_INPUTS & set(got):
                raise ArtifactError(
                    f"{spec.file} takes segment content features: set SEGINT_FEATURE_STORE "
                    "to the model's segment feature store"
                )
            if set(got) != {i.name for i in spec.inputs}:
                raise ArtifactError(f"{spec.file} inputs {got} differ from its manifest")
        # Per graph, looked up once (a ragged request runs the scorer several times): input
        # names, output names, and its labelled metric children.
        self._io = {
            name: (
                [i.name for i in session.get_inputs()],
                [o.name for o in session.get_outputs()],
                metrics.INFERENCE_DURATION.labels(name),
                metrics.BATCH_SIZE.labels(name),
            )
            for name, session in sessions.items()
        }
        # Scorers exported before ragged scoring have no slot_index: every run is padded.
        scorer = sessions.get(SCORER)
        self.ragged = scorer is not None and any(
            i.name == "slot_index" for i in scorer.get_inputs()
        )
        if self.ragged and not set(self._io[SCORER][0]) <= RAGGED_INPUTS:
            extra = sorted(set(self._io[SCORER][0]) - RAGGED_INPUTS)
            raise ArtifactError(f"a scorer with slot_index cannot take {extra}")
        self.ragged_enabled = True  # off: one padded run of S slots (bench's "before")
        # bucket_plan's cost of a run, in slots
        self.run_overhead = KERNEL_RUN_OVERHEAD_SLOTS if kernel else RUN_OVERHEAD_SLOTS
        self._slots = np.arange(manifest.s_max, dtype=np.int64)  # slot_index feeds: [:T]

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        provider: str = "auto",
        intra_op_threads: int = 1,
        spinning: bool = True,
        feature_store: str | Path | None = None,
        feature_l1: bool | None = None,
        precision: str = FP32,
        kernel: str = AUTO,
        kernel_library: str | Path | None = None,
    ) -> Ranker:
        """Open every graph of the artifact in its own session.

        Args:
            artifact_dir: folder with ``manifest.json``, the ONNX files and vocabularies.
            provider: ``auto`` (CUDA when a CUDA session really starts, else CPU), ``cpu``
                or ``cuda`` (fail when CUDA does not start).
            intra_op_threads: ORT threads per run (set explicitly: ORT's default counts the
                host's cores, not this container's).
            spinning: whether idle ORT threads spin (off when cores are shared).
            feature_store: segment feature store of a content model (ignored, with a
                warning, for models without the content modality).
            feature_l1: L1-normalise the store's vectors; None: as in the model's training.
            precision: the scorer's: ``fp32`` (the exported graph), ``int8`` (its int8 form;
                an artifact without one is an error) or ``auto`` (int8 when the artifact has
                it and the scorer runs on CPU, where it was measured; fp32 otherwise).
            kernel: ``auto``: an fp32 scorer on CPU runs from ``scorer.kernel.onnx`` when the
                artifact has it and ``kernel_library`` is built and runs on this CPU (a
                library that fails to load is logged and the exported scorer served);
                ``off``: always ``scorer.onnx``.
            kernel_library: the custom-operator library (default `service.kernels.LIBRARY`).

        Raises:
            ArtifactError: the artifact is missing, malformed or needs unsupported inputs;
                int8 asked of an artifact without an int8 scorer; a file whose sha256
                differs from the manifest's.
            SegintError: the feature store is unreadable or has another width.
        """
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"precision {precision!r}, not one of {PRECISION_CHOICES}")
        if kernel not in KERNEL_CHOICES:
            raise ValueError(f"kernel {kernel!r}, not one of {KERNEL_CHOICES}")
        folder = Path(artifact_dir)
        manifest = Manifest.read(folder)
        if precision == INT8 and not any(manifest.variant(g, INT8) for g in INT8_FILES):
            raise ArtifactError(
                f"SEGINT_SCORER_PRECISION=int8 but the artifact {folder} has no int8 scorer "
                f"({INT8_FILES[SCORER]} in its manifest's precisions; a cross-stream artifact, "
                "or one exported before the int8 form was, has none): re-export it with "
                "`segint export`, or set SEGINT_SCORER_PRECISION=fp32"
            )
        content = _open_content(manifest, feature_store, feature_l1)
        use_cuda = provider in ("auto", "cuda")
        sessions: dict[str, ort.InferenceSession] = {}
        served, with_kernel = FP32, False
        # Graphs with an int8 form last: by then a failed CUDA start is known (``auto``).
        for name in sorted(manifest.graphs, key=lambda g: g in INT8_FILES):
            variant = _variant(manifest, name, precision, use_cuda)
            path = folder / (manifest.graphs[name].file if variant is None else variant.file)
            _check_listed(path, None if variant is None else variant.sha256)
            if variant is not None:
                served = INT8
            if name == SCORER and variant is None and kernel == AUTO and not use_cuda:
                opened = _open_kernel_scorer(
                    folder, manifest, kernel_library, intra_op_threads, spinning
                )
                if opened is not None:
                    sessions[name], with_kernel = opened, True
                    continue
            session = _open_session(path, use_cuda, intra_op_threads, spinning)
            active = session.get_providers()[0]
            if use_cuda and active != _CUDA:
                if provider == "cuda":
                    raise ArtifactError(
                        f"provider=cuda but ONNX Runtime runs {path.name} on {active}"
                    )
                # onnxruntime-gpu lists CUDA as available and silently builds a CPU session
                # when CUDA/cuDNN do not load; reopen with plain CPU options and stop trying.
                log.warning("CUDA execution provider did not start; using %s", active)
                use_cuda = False
                session = _open_session(path, False, intra_op_threads, spinning)
            sessions[name] = session
        users = _load_vocab(folder / manifest.vocab_users)
        videos = _load_vocab(folder / manifest.vocab_videos)
        ctr = None if manifest.ctr is None else CtrHead.load(folder, manifest.ctr, manifest.s_max)
        table = _load_video_table(folder, manifest, len(videos))
        compiled = _load_heads(kernel_library) if kernel == AUTO else None
        ranker = cls(
            manifest, sessions, users, videos, content, ctr, served, table, with_kernel, compiled
        )
        log.info(
            "loaded artifact %s (%s stream, graphs %s, scorer precision %s%s, %s heads) on %s "
            "with %d threads",
            manifest.model_version,
            manifest.user_stream,
            sorted(sessions),
            served,
            f", video-block kernel ({kernels.isa()})" if with_kernel else "",
            "compiled" if compiled is not None else "numpy",
            ranker.provider,
            intra_op_threads,
        )
        return ranker

    def encode_user(
        self, user_id: int, history: History, timings: Timings | None = None
    ) -> UserState:
        """The user side, computed once per user: encoder states for the self stream (the
        cross stream has no separable user side, so only the history is kept)."""
        if self.manifest.user_stream != "self":
            return UserState(history, None, None)
        out = self._run("user_encoder", self._user_feeds(user_id, history), timings)
        states = out["user_states"][0]  # (n_mod, L, M, d)
        mask = out["user_mask"][0].astype(bool)  # (M,)
        return UserState(history, states, mask)

    def score(
        self,
        user_id: int,
        user: UserState,
        video_ids: npt.ArrayLike,
        duration_ms: npt.ArrayLike,
        timings: Timings | None = None,
        with_ctr: bool = True,
    ) -> Scores:
        """Score ``C`` candidates for one user in one session run (plus one run of the CTR
        head over all of them when the artifact has one and ``with_ctr``)."""
        vids = np.asarray(video_ids, dtype=np.int64)
        dur = np.asarray(duration_ms, dtype=np.int64)
        if self.heads is not None:  # the same two steps compiled
            nseg, video_idx = self.heads.prepare(vids, dur, self.videos.ids, self.manifest.s_max)
        else:
            nseg = np.clip(count_segments(dur), 1, self.manifest.s_max)  # (C,)
            video_idx = self.videos.lookup(vids)  # (C,)
        c = len(vids)
        feeds: dict[str, npt.NDArray[np.generic]] = {"video_ids": video_idx, "n_segments": nseg}
        if self.content is not None:
            feeds["video_content"] = self.content.video_content(vids, nseg)  # (C, S, Dc)
        if self.manifest.user_stream == "self":
            if user.states is None or user.mask is None:
                raise ValueError("self-stream scoring needs encoded user states")
            feeds["user_states"] = user.states[None]  # (1, n_mod, L, M, d) broadcasts over C
            feeds["user_mask"] = user.mask[None]  # (1, M)
            out: dict[str, npt.NDArray[np.generic]]
            if self.ragged:
                out = {"logits": self._score_ragged(feeds, nseg, timings)}
            else:
                out = self._run(SCORER, feeds, timings, rows=c)
        else:
            # Cross stream: user tokens attend to the target video, so the user inputs are
            # repeated per candidate and the whole model runs on C rows.
            feeds |= {
                k: np.repeat(v, c, axis=0)
                for k, v in self._user_feeds(user_id, user.history).items()
            }
            out = self._run("model", feeds, timings, rows=c)
        logits = np.asarray(out.pop("logits"), dtype=np.float32)  # (C, S)
        ctr = None
        if with_ctr and self.ctr is not None:
            ctr_feeds = self.ctr.feeds(user_id, user.history, vids, nseg, logits)
            ctr = self._run("ctr", ctr_feeds, timings, rows=c)["ctr"].astype(np.float64)
        # The run's calibration temperature (1 without one) shapes the distribution only;
        # segment_scores and the CTR head keep the raw logits.
        if self.heads is not None:
            table, rows, keep = None, None, 1.0
            if self.video_table is not None:  # its videos' rows: (1 - w) network + w table
                table, keep = self.video_table.scaled, 1.0 - self.video_table.weight
                rows = np.where(self.video_table.mixed(video_idx, nseg), video_idx, -1)
            out_heads = self.heads(logits, nseg, dur, self.temperature, table, rows, keep)
        else:
            out_heads = numpy_heads(
                logits, nseg, dur, self.temperature, self.video_table, video_idx
            )
        return Scores(
            logits=logits,
            n_segments=nseg,
            exit_distribution=out_heads.exit_distribution,
            predicted_exit_slot=out_heads.predicted_exit_slot,
            expected_watch_ms=out_heads.expected_watch_ms,
            completion_probability=out_heads.completion_probability,
            median_watch_ms=out_heads.median_watch_ms,
            video_unknown=video_idx == UNKNOWN,
            user_unknown=user_id not in self.users,
            ctr=ctr,
            extra=out,
        )

    def _score_ragged(
        self,
        feeds: dict[str, npt.NDArray[np.generic]],
        nseg: IntArray,
        timings: Timings | None,
    ) -> npt.NDArray[np.float32]:
        """Logits (C, S) from one scorer run per length bucket, each on its first T slots only
        (`bucket_plan`); the slots no run computed are impossible outcomes (j > N) and carry
        ``CUT_SLOT_LOGIT``, the padded model's value there.

        The candidates are put in bucket order once, so every run's feeds are contiguous
        slices (no per-run gather) and its logits a block of the sorted output; request order
        is restored with one gather at the end. The runs are timed (and observed in the
        metrics) together, as one stage.
        """
        s_max, c = self.manifest.s_max, len(nseg)
        if self.ragged_enabled:
            plan = bucket_plan if self.heads is None else self.heads.bucket_plan
            order, runs = plan(nseg, s_max, self.run_overhead)
        else:
            order, runs = np.arange(c), [(0, c, s_max)]
        sorted_feeds: dict[str, npt.NDArray[np.generic]] = {
            k: feeds[k][order] for k in ("video_ids", "video_content") if k in feeds
        }  # (C,), (C, S, Dc): bucket order
        sorted_feeds["n_segments"] = nseg[order]
        logits = np.full((c, s_max), CUT_SLOT_LOGIT, dtype=np.float32)  # (C, S), bucket order
        # One feed dict for every run, its per-run entries replaced (the graph's inputs only)
        inputs, names, _, _ = self._io[SCORER]
        at = names.index("logits")
        part = {name: feeds[name] for name in inputs if name in ("user_states", "user_mask")}
        ids, nsorted = sorted_feeds["video_ids"], sorted_feeds["n_segments"]
        content = sorted_feeds.get("video_content")
        elapsed = 0.0
        for start, stop, width in runs:
            part["video_ids"] = ids[start:stop]
            part["n_segments"] = nsorted[start:stop]
            part["slot_index"] = self._slots[:width]
            if content is not None:
                part["video_content"] = np.ascontiguousarray(
                    content[start:stop, :width]
                )  # (c, T, Dc)
            values, seconds = self._timed_run(SCORER, part)
            elapsed += seconds
            logits[start:stop, :width] = values[at]  # (c, T)
        self._observe(SCORER, elapsed, c, timings)
        if not self.ragged_enabled:
            return logits
        restored = np.empty_like(logits)
        restored[order] = logits
        return restored

    def _user_feeds(self, user_id: int, history: History) -> dict[str, npt.NDArray[np.generic]]:
        """Feeds of one user's side, right-padded like training's collate (video 0 = unknown,
        exit slot 0, one segment, mask False) to ``H = max(h, 1)`` columns."""
        h = min(len(history), self.manifest.history_len)
        width = max(h, 1)
        feeds = {
            "user_ids": self.users.lookup([user_id]),  # (1,)
            **history_feeds(history, self.videos, self.manifest.history_len, self.manifest.s_max),
        }  # history inputs (1, H)
        if self.content is not None:
            # Raw ids index the store; padding columns come back as zeros.
            raw = np.zeros((1, width), dtype=np.int64)
            raw[0, :h] = history.video_ids[:h]
            feeds["hist_content"] = self.content.hist_content(
                raw, feeds["hist_exit_slots"], feeds["hist_n_segments"], feeds["hist_mask"]
            )  # (1, H, Dc)
        return feeds

    def _run(
        self,
        graph: str,
        feeds: dict[str, npt.NDArray[np.generic]],
        timings: Timings | None,
        rows: int = 1,
    ) -> dict[str, npt.NDArray[np.generic]]:
        inputs, names, _, _ = self._io[graph]
        values, elapsed = self._timed_run(graph, {name: feeds[name] for name in inputs})
        self._observe(graph, elapsed, rows, timings)
        return dict(zip(names, values, strict=True))

    def _timed_run(
        self, graph: str, feeds: dict[str, npt.NDArray[np.generic]]
    ) -> tuple[list[npt.NDArray[np.generic]], float]:
        """One session run on exactly the graph's inputs: (its outputs in the graph's order,
        seconds)."""
        t0 = time.perf_counter()
        values = self.sessions[graph].run(self._io[graph][1], feeds)
        return values, time.perf_counter() - t0

    def _observe(self, graph: str, seconds: float, rows: int, timings: Timings | None) -> None:
        """One stage of a request in the metrics (a ragged scorer's runs together)."""
        _, _, duration, batch = self._io[graph]
        duration.observe(seconds)
        batch.observe(rows)
        if timings is not None:
            timings.ort_s += seconds


def buckets(
    n_segments: IntArray, s_max: int, run_overhead: int = RUN_OVERHEAD_SLOTS
) -> list[tuple[IntArray, int]]:
    """Group candidates into scorer runs of tight width: ``[(rows, T), ...]`` (`bucket_plan`
    with each run's rows as indices into the request)."""
    order, runs = bucket_plan(n_segments, s_max, run_overhead)
    return [(order[start:stop], width) for start, stop, width in runs]


def bucket_plan(
    n_segments: IntArray, s_max: int, run_overhead: int = RUN_OVERHEAD_SLOTS
) -> tuple[IntArray, list[tuple[int, int, int]]]:
    """Scorer runs of tight width: ``(order, [(start, stop, T), ...])``, run i scoring the
    candidates ``order[start:stop]`` on their first T slots.

    A candidate with N segments needs its N + 1 outcome slots (the N when N = S). Sorted by
    that need (``order``, stable), the candidates are cut into contiguous groups, each run on
    T = the largest need in it; the cuts minimise ``sum(run_overhead + rows * T)`` (exact, by
    dynamic programming over the k <= S distinct needs). Every candidate is in exactly one run.

    The programme: ``best[i] = run_overhead + before[i] w + min_{j < i} (best[j] - before[j]
    w)`` with ``w`` the i-th distinct need; each ``j`` is a line of slope ``-before[j]``
    (falling with j) evaluated at ``w`` (rising with i), so the minimum is kept on a lower
    envelope of those lines (the convex hull trick): O(k) steps instead of k^2 / 2, in exact
    integer arithmetic (half the time of the quadratic loop at 500 candidates).
    """
    need = np.minimum(np.asarray(n_segments, dtype=np.int64) + 1, s_max)  # (C,)
    counts = np.bincount(need, minlength=s_max + 1)
    distinct = np.flatnonzero(counts)
    widths: list[int] = distinct.tolist()  # ascending distinct needs
    # before[i]: candidates with need < widths[i] (before[k] = C)
    before: list[int] = [0, *np.cumsum(counts[distinct]).tolist()]
    k = len(widths)
    best = [0] * (k + 1)  # best[i]: least cost of the i smallest distinct needs
    cut = [0] * (k + 1)  # where the last group of that optimum starts
    # lower envelope: line j is y = slope * w + icept, slope = -before[j], icept = best[j]
    slope, icept, line = [0], [0], [0]
    at = 0  # envelope line of the last query (queries rise, so it only moves right)
    for i in range(1, k + 1):
        w = widths[i - 1]
        last = len(slope) - 1
        while at < last and slope[at + 1] * w + icept[at + 1] <= slope[at] * w + icept[at]:
            at += 1
        best[i] = slope[at] * w + icept[at] + run_overhead + before[i] * w
        cut[i] = line[at]
        m, b = -before[i], best[i]
        # drop envelope lines that the new one (steeper) makes useless: the last line is
        # useless where the new one meets the one before it no later than it does
        while len(slope) >= 2 and (b - icept[-2]) * (slope[-2] - slope[-1]) <= (
            icept[-1] - icept[-2]
        ) * (slope[-2] - m):
            del slope[-1], icept[-1], line[-1]
        slope.append(m)
        icept.append(b)
        line.append(i)
        at = min(at, len(slope) - 1)
    order = np.argsort(need, kind="stable")
    runs: list[tuple[int, int, int]] = []
    i = k
    while i > 0:
        j = cut[i]
        runs.append((before[j], before[i], widths[i - 1]))
        i = j
    return order, runs[::-1]


def numpy_heads(
    logits: npt.NDArray[np.float32],
    nseg: IntArray,
    duration_ms: IntArray,
    temperature: float,
    video_table: VideoTable | None,
    video_idx: IntArray,
) -> Heads:
    """The response heads in numpy (`CompiledHeads` computes the same in one pass): the
    calibrated exit distribution, the video table's rows mixed in, and what the response
    carries from it."""
    dist = watchtime.calibrated_exit_distribution(logits, nseg, temperature)
    if video_table is not None:  # its videos' rows: (1 - w) network + w table
        video_table.mix(dist, video_idx, nseg)
    return Heads(
        exit_distribution=dist,
        predicted_exit_slot=heads.expected_exit_slot(dist),
        expected_watch_ms=expected_watch_ms(dist, duration_ms),
        completion_probability=heads.completion_probability(dist, nseg),
        median_watch_ms=watchtime.median_watch_ms(dist, duration_ms),
    )


def expected_watch_ms(dist: npt.NDArray[np.float64], duration_ms: IntArray) -> FloatArray:
    """`segint.heads.expected_watch_ms` for exit distributions with no mass beyond each row's
    ``N = min(ceil(duration / 5 s), S)`` (the ranker's: the outcome mask puts 0 there), as one
    matrix-vector product and two per-row corrections instead of a (C, S) table of watch
    times: equal to it within rounding (1e-15 relative; tests/service/test_ragged.py).

    Slot ``j < n - 1`` (``n = ceil(d / 5 s)``) counts ``(j + 1/2) 5 s``; slot ``n - 1``
    ``min((n - 1/2) 5 s, d)``; slot ``n`` (when ``n < S``) the whole duration ``d``."""
    s = dist.shape[-1]
    d = np.asarray(duration_ms, dtype=np.float64)
    n = np.maximum(count_segments(duration_ms), 1)  # (C,) unclipped: n > S has no short slot
    mid = (np.arange(s) + 0.5) * SEGMENT_MS  # (S,)
    out: FloatArray = dist @ mid
    rows = np.arange(len(d))
    last = np.minimum(n, s) - 1  # slot n - 1 when n <= S
    short = np.where(n <= s, np.minimum(mid[last], d) - mid[last], 0.0)  # its watch time - mid
    out += dist[rows, last] * short
    done = n < s  # slot n exists: watched to the end, d instead of its mid
    out[done] += dist[rows[done], n[done]] * (d[done] - (n[done] + 0.5) * SEGMENT_MS)
    return out


def top_segments(logits: npt.ArrayLike, n: int, k: int, min_gap: int) -> list[int]:
    """Indices of the ``k`` highest-interest segments among ``0..n-1`` such that any two
    picked segments are at least ``min_gap`` apart, best first (greedy: take the best
    remaining segment that keeps the gap). Fewer than ``k`` when the gap leaves no room."""
    scores = np.asarray(logits, dtype=np.float64)[:n]
    picked: list[int] = []
    for j in np.argsort(-scores, kind="stable"):
        if all(abs(int(j) - p) >= min_gap for p in picked):
            picked.append(int(j))
            if len(picked) == k:
                break
    return picked


def _open_session(
    path: Path, cuda: bool, threads: int, spinning: bool, custom_ops: Path | None = None
) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if custom_ops is not None:
        opts.register_custom_ops_library(str(custom_ops))
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    probe = cuda and _CUDA in ort.get_available_providers()
    providers = [_CUDA, _CPU] if probe else [_CPU]
    if probe:
        # On a host without CUDA the probe's "cannot load libcublasLt / need CUDA 13" lines
        # are expected; we log our own one-line warning instead. 2 = ORT's default severity.
        ort.set_default_logger_severity(4)
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=providers,
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
    except Exception as e:  # ORT raises its own exception types for bad files
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({e})") from None
    finally:
        if probe:
            ort.set_default_logger_severity(2)


def _open_kernel_scorer(
    folder: Path, manifest: Manifest, library: str | Path | None, threads: int, spinning: bool
) -> ort.InferenceSession | None:
    """The CPU session of ``scorer.kernel.onnx`` with the custom-operator library, or None
    (the exported scorer is served) when the artifact has no such file, the library is not
    built or does not run on this CPU, or the session does not open (logged)."""
    spec = manifest.variant(SCORER, KERNEL)
    lib = kernels.library(library)
    if spec is None or lib is None:
        if spec is not None:
            log.info("scorer: %s not used (no kernel library for this CPU)", spec.file)
        return None
    path = folder / spec.file
    _check_listed(path, spec.sha256)
    try:
        return _open_session(path, False, threads, spinning, custom_ops=lib)
    except Exception as e:  # ORT raises its own exception types (a library it cannot load)
        log.warning("scorer: %s not used (%s); serving the exported scorer", spec.file, e)
        return None


def _load_heads(library: str | Path | None) -> CompiledHeads | None:
    """The compiled response heads from the kernels' library, or None (numpy computes them)
    when it is not built for this CPU or does not load (logged)."""
    lib = kernels.library(library)
    if lib is None:
        return None
    try:
        return CompiledHeads(lib)
    except (OSError, AttributeError) as e:  # not a library, or one built before heads.cpp
        log.warning("response heads: %s not used (%s); numpy computes them", lib, e)
        return None


def _variant(manifest: Manifest, name: str, precision: str, cuda: bool) -> VariantSpec | None:
    """The int8 form of graph ``name`` to open in its place, or None for the exported graph."""
    if precision == FP32 or name not in INT8_FILES:
        return None
    variant = manifest.variant(name, INT8)
    if precision == AUTO and cuda:
        return None  # int8 kernels measured on CPU only
    return variant


def _open_content(
    manifest: Manifest, store: str | Path | None, l1: bool | None
) -> ContentFeatures | None:
    """The feature store of a content model; None for other models."""
    if "content" not in manifest.modalities:
        if store is not None:
            log.warning("feature store %s ignored: the model has no content modality", store)
        return None
    if store is None:
        raise ArtifactError(
            f"{manifest.model_version} is a content model: set SEGINT_FEATURE_STORE to its "
            "segment feature store"
        )
    if l1 is None:  # as in training, recorded by the export
        l1 = bool((manifest.features or {}).get("l1_normalize", False))
    return ContentFeatures.open(store, manifest.config, l1_normalize=l1)


def _check_listed(path: Path, sha256: str | None) -> None:
    """A file the manifest lists: it must exist and, when the manifest gives one, have that
    sha256 (ArtifactError naming the file otherwise)."""
    if not path.is_file():
        raise ArtifactError(f"{path} is listed in the manifest but missing")
    if sha256 is not None and file_sha256(path) != sha256:
        raise ArtifactError(f"{path}: its sha256 differs from the manifest's")


def _load_video_table(folder: Path, manifest: Manifest, n_videos: int) -> VideoTable | None:
    """The artifact's per-video exit table (its manifest's ``video_table``), sha256-checked and
    of the artifact's vocabulary size and slot count."""
    entry = manifest.video_table
    if entry is None:
        return None
    path = folder / str(entry["file"])
    _check_listed(path, str(entry["sha256"]))
    try:
        table = VideoTable.read(path)
        table.check(n_videos, manifest.s_max, str(path))
    except SegintError as e:
        raise ArtifactError(str(e)) from None
    return table


def _load_vocab(path: Path) -> Vocab:
    try:
        return Vocab.load(path)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read the vocabulary ({e})") from None
