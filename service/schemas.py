"""Request and response models of the HTTP API (pydantic v2).

Requests reject unknown fields (``extra="forbid"``). Limits that depend on the deployment
(most candidates, longest video = ``s_max * 5000 - 1`` ms, largest ``k``) are not known until
the artifact is loaded, so `limited_models` derives subclasses that carry them: the OpenAPI
schema then states the real bounds and a violation is a 422 naming the field. Responses are
declared models, which FastAPI serializes in Rust (SERVING-NOTES section 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

if TYPE_CHECKING:
    from service.kernels.heads import CompiledHeads
    from service.ranker import Scores

# The largest integer every JSON parser reads exactly (JavaScript's Number.MAX_SAFE_INTEGER).
# Past 2**53 doubles skip integers, so a client or validator comparing in doubles would take
# 2**63 for the int64 limit and call ids the service rejects valid: the bound must be exact.
JSON_INT_MAX = 2**53 - 1
MS_MAX = JSON_INT_MAX  # any millisecond value past this is not a real time


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" includes 245.0; the strict models would reject it. Booleans,
    # strings and fractions stay as they are and are rejected by strict validation.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# Request integers: JSON integers, or numbers with a zero fraction (JSON Schema's `integer`);
# never `true`/`false` or strings (the models are strict). The validator goes after the bounds
# so that they stay `minimum`/`maximum` of an integer in the JSON schema.
INTEGRAL = BeforeValidator(_integral)
Id = Annotated[
    int, Field(ge=0, le=JSON_INT_MAX, description="raw id, as in the interaction log"), INTEGRAL
]
Ms = Annotated[int, Field(ge=0, le=MS_MAX), INTEGRAL]
Duration = Annotated[int, Field(ge=1, description="video length in ms"), INTEGRAL]
HistorySource = Literal["cache", "request", "empty"]
# Per-candidate arrays a /score request may ask for (`ScoreRequest.include`); off by default.
ArrayField = Literal["segment_scores", "exit_distribution"]
_M = TypeVar("_M", bound=BaseModel)

_SCORE_EXAMPLE: dict[str, Any] = {
    "user_id": 12345,
    "candidates": [
        {"video_id": 4101, "duration_ms": 12300},
        {"video_id": 982, "duration_ms": 61000},
    ],
}
_HISTORY_EXAMPLE = [
    {"video_id": 77, "duration_ms": 20000, "play_time_ms": 9000, "time_ms": 1714000000000}
]


class _Request(BaseModel):
    # strict: JSON integers only (no `false`, `"5"` or `5.0` for an id), JSON booleans only.
    model_config = ConfigDict(extra="forbid", strict=True)


class Candidate(_Request):
    """One video to score."""

    video_id: Id
    duration_ms: Duration


class HistoryView(_Request):
    """One earlier view of the user, given with the request."""

    video_id: Id
    duration_ms: Duration
    play_time_ms: Ms = Field(description="how long the user watched, in ms")
    time_ms: Ms | None = Field(None, description="when (ms since epoch); orders the history")


class ScoreRequest(_Request):
    """One user and the candidate videos to score for them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _SCORE_EXAMPLE,
                _SCORE_EXAMPLE | {"history": _HISTORY_EXAMPLE},
                _SCORE_EXAMPLE | {"include": ["segment_scores", "exit_distribution"]},
            ]
        }
    )

    user_id: Id
    candidates: list[Candidate] = Field(min_length=1)
    history: list[HistoryView] | None = Field(
        None,
        description="recent views, most recent first. Used only when the service has no "
        "cached state for the user (then it seeds the cache); view events keep it current.",
    )
    include: list[ArrayField] = Field(
        default_factory=list,
        max_length=2,
        description="per-candidate arrays to add to the default fields: `segment_scores` "
        "(N values), `exit_distribution` (N + 1 values). Omitted by default: they are most "
        "of a response's bytes and most callers never read them.",
    )


class ThumbnailRequest(_Request):
    """Pick the segments of one video that this user would find most interesting."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": 12345, "video_id": 4101, "duration_ms": 42000, "k": 3}]
        }
    )

    user_id: Id
    video_id: Id
    duration_ms: Duration
    k: Annotated[int, Field(ge=1, description="segments to return"), INTEGRAL] = 3
    min_gap_segments: Annotated[
        int,
        Field(ge=1, le=10_000, description="least index distance between two returned segments"),
        INTEGRAL,
    ] = 1


class ViewEvent(_Request):
    """A finished view: appended to the user's cached history (idempotent on user, video,
    time)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 12345,
                    "video_id": 4101,
                    "duration_ms": 12300,
                    "play_time_ms": 7000,
                    "time_ms": 1714000000000,
                }
            ]
        }
    )

    user_id: Id
    video_id: Id
    duration_ms: Duration
    play_time_ms: Ms
    time_ms: Ms


@dataclass(frozen=True)
class Limits:
    max_candidates: int
    max_history: int
    max_duration_ms: int  # s_max * 5000 - 1: longer videos do not fit the model's slots
    max_k: int


@dataclass(frozen=True)
class RequestModels:
    score: type[ScoreRequest]
    thumbnail: type[ThumbnailRequest]
    view: type[ViewEvent]


def limited_models(limits: Limits) -> RequestModels:
    """Subclasses of the request models that also enforce (and document) ``limits``."""
    # Field types built at run time are values to mypy, hence the `Any` annotations.
    duration: Any = Annotated[
        int, Field(ge=1, le=limits.max_duration_ms, description="video length in ms"), INTEGRAL
    ]
    candidate = create_model("Candidate", __base__=Candidate, duration_ms=(duration, ...))
    view = create_model("HistoryView", __base__=HistoryView, duration_ms=(duration, ...))
    candidates: Any = Annotated[
        list[candidate],  # type: ignore[valid-type]
        Field(min_length=1, max_length=limits.max_candidates),
    ]
    history: Any = Annotated[
        list[view] | None,  # type: ignore[valid-type]
        Field(
            max_length=limits.max_history,
            description=ScoreRequest.model_fields["history"].description,
        ),
    ]
    k: Any = Annotated[
        int, Field(ge=1, le=limits.max_k, description="segments to return"), INTEGRAL
    ]
    score = create_model(
        "ScoreRequest",
        __base__=_fitted_examples(ScoreRequest, limits),
        candidates=(candidates, ...),
        history=(history, None),
    )
    thumbnail = create_model(
        "ThumbnailRequest",
        __base__=_fitted_examples(ThumbnailRequest, limits),
        duration_ms=(duration, ...),
        k=(k, min(3, limits.max_k)),
    )
    event = create_model(
        "ViewEvent", __base__=_fitted_examples(ViewEvent, limits), duration_ms=(duration, ...)
    )
    return RequestModels(score, thumbnail, event)


def _fitted_examples(base: type[_M], limits: Limits) -> type[_M]:
    """``base`` with its schema examples cut to ``limits``: an example is a request the
    service must accept (API fuzzers send them as valid requests)."""

    def fit(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: fit(v, k) for k, v in value.items()}
        if isinstance(value, list):
            cap = {"history": limits.max_history, "candidates": limits.max_candidates}
            return [fit(v) for v in value[: cap.get(key, len(value))]]
        if key == "duration_ms":
            return min(value, limits.max_duration_ms)
        if key == "k":
            return min(value, limits.max_k)
        return value

    extra = base.model_config.get("json_schema_extra")
    examples = fit(extra["examples"]) if isinstance(extra, dict) else []
    config = base.model_config | ConfigDict(json_schema_extra={"examples": examples})
    return type(base.__name__, (base,), {"model_config": config, "__module__": __name__})


class CandidateScore(BaseModel):
    """What the model says about one candidate for this user.

    Default fields: the ids' unknown flags, N, the predicted skip segment, the skip and
    completion probabilities, the expected watch time and the CTR. The arrays
    (``segment_scores``, ``exit_distribution``) are present only when the request lists them in
    ``include``. Floats are float32 values (the model's precision), written in their shortest
    round-trip form.
    """

    video_id: int
    video_unknown: bool = Field(description="video not seen in training (cold path)")
    n_segments: int = Field(description="N: 5-second segments of the video")
    predicted_exit_slot: int = Field(
        description="predicted skip segment: the expected exit segment (N = watches to the end)"
    )
    skip_probability: float = Field(
        description="probability of leaving before the end (1 - completion_probability)"
    )
    expected_watch_ms: int = Field(
        description="mean watch time of the exit distribution, in whole ms"
    )
    median_watch_ms: int = Field(
        description="the served watch-time estimate, in whole ms: watch time of the median "
        "exit slot, which minimises the absolute error (segint.watchtime)"
    )
    completion_probability: float = Field(description="probability of watching to the end")
    segment_scores: list[float] | None = Field(
        None,
        description='only with `"include": ["segment_scores"]`: interest per segment (N '
        "values); higher = less likely to leave there",
    )
    exit_distribution: list[float] | None = Field(
        None,
        description='only with `"include": ["exit_distribution"]`: probability of leaving in '
        "segment 0..N-1, then of watching to the end (N + 1 values; N when N = s_max, which "
        "leaves no slot for completion)",
    )
    ctr: float | None = Field(
        None,
        description="SegRec CTR: probability of an effective view, sigmoid(sum_j softmax(p)_j "
        "y_j) over the video's segments (p: segment interest, y: the CTR backbone's per-segment "
        "logits). Absent when the deployed artifact has no CTR head (exported without "
        "--segrec; `/healthz` `ctr_head` is null then)",
    )

    @classmethod
    def json_array(
        cls,
        video_ids: list[int],
        s: Scores,
        include: frozenset[str],
        compiled: CompiledHeads | None = None,
    ) -> bytes:
        """The JSON array of every candidate's `CandidateScore` object, in request order.

        Written column by column: orjson writes each column (a numpy array) at once, its items
        are cut at the commas, and one bytes template per candidate puts the fields together.
        Same bytes as one dict per candidate given to orjson, in about half the time at 500
        candidates (docs/serving.md, round 4).
        Probabilities are float32 values (orjson writes a float32 in its shortest round-trip
        form: ``0.6498181``, not ``0.6498181223869324``), watch times whole ms. ``ctr`` is
        present only with a CTR head, the arrays only when ``include`` lists them: together
        with the request-level ``user_unknown`` that keeps 500 default candidates under 100 KB.

        With ``compiled`` (the kernels' library) and no arrays asked for, one compiled pass
        writes the same bytes (`CompiledHeads.candidates_json`).
        """
        if compiled is not None and not include:
            text = compiled.candidates_json(
                video_ids, s.video_unknown, s.n_segments, s.predicted_exit_slot,
                s.completion_probability, s.expected_watch_ms, s.median_watch_ms, s.ctr,
            )  # fmt: skip
            if text is not None:
                return text
        nseg = s.n_segments
        columns: dict[str, list[bytes]] = {
            "video_id": _items(np.asarray(video_ids, dtype=np.int64)),
            "video_unknown": _items(s.video_unknown),
            "n_segments": _items(nseg),
            "predicted_exit_slot": _items(s.predicted_exit_slot),
            "skip_probability": _items(_f32(1.0 - s.completion_probability)),
            "expected_watch_ms": _items(np.rint(s.expected_watch_ms).astype(np.int64)),
            "median_watch_ms": _items(np.rint(s.median_watch_ms).astype(np.int64)),
            "completion_probability": _items(_f32(s.completion_probability)),
        }
        if s.ctr is not None:
            columns["ctr"] = _items(_f32(s.ctr))
        if "segment_scores" in include:
            logits = _f32(s.logits)
            columns["segment_scores"] = [
                orjson.dumps(logits[i, :n], option=orjson.OPT_SERIALIZE_NUMPY)
                for i, n in enumerate(nseg.tolist())
            ]
        if "exit_distribution" in include:
            dist = _f32(s.exit_distribution)  # (C, S)
            outcomes = np.minimum(nseg + 1, dist.shape[1]).tolist()
            columns["exit_distribution"] = [
                orjson.dumps(dist[i, :k], option=orjson.OPT_SERIALIZE_NUMPY)
                for i, k in enumerate(outcomes)
            ]
        # One list of 2 k C pieces, (key, value) per field and candidate, filled a column at a
        # time by slice assignment and joined once: no Python-level work per candidate.
        c, k = len(video_ids), len(columns)
        if c == 0:
            return b"[]"
        parts: list[bytes] = [b""] * (2 * k * c)
        for i, (name, values) in enumerate(columns.items()):
            key = f'"{name}":'.encode()
            parts[2 * i :: 2 * k] = [(b"},{" if i == 0 else b",") + key] * c
            parts[2 * i + 1 :: 2 * k] = values
        parts[0] = b"[{" + f'"{next(iter(columns))}":'.encode()
        return b"".join(parts) + b"}]"


def _items(column: npt.NDArray[np.generic]) -> list[bytes]:
    """The JSON text of each item of a 1-D numeric or boolean array (none contains a comma)."""
    text = orjson.dumps(np.ascontiguousarray(column), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].split(b",") if len(column) else []


def _f32(x: Any) -> Any:
    return np.ascontiguousarray(x, dtype=np.float32)


class ScoreResponse(BaseModel):
    model_version: str
    history_source: HistorySource = Field(description="where the user's history came from")
    history_length: int
    cache_degraded: bool = Field(description="the cache store failed; a fallback answered")
    user_unknown: bool = Field(
        description="user not seen in training (cold path); one flag for the request, since "
        "every candidate is scored for the same user"
    )
    candidates: list[CandidateScore]


class ThumbnailSegment(BaseModel):
    index: int
    start_ms: int
    end_ms: int
    score: float = Field(description="the segment's interest score")


class ThumbnailResponse(BaseModel):
    model_version: str
    video_id: int
    user_unknown: bool
    video_unknown: bool
    n_segments: int
    cache_degraded: bool
    segments: list[ThumbnailSegment] = Field(description="best first, at most k")


class ViewResponse(BaseModel):
    user_id: int
    applied: bool = Field(description="false when this (video, time) was already recorded")
    history_length: int
    cache_degraded: bool = Field(description="Redis failed; applied locally, replayed later")


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str
    provider: str = Field(description="ONNX Runtime execution provider actually in use")
    user_stream: str
    scorer_precision: Literal["fp32", "int8"] = Field(
        description="precision of the candidate scorer actually served: fp32 (the exported "
        "graph) or int8 (its dynamic int8 form: weights int8, activations quantised per run); "
        "SEGINT_SCORER_PRECISION chooses it. The user encoder always runs in fp32"
    )
    scorer_kernel: bool = Field(
        description="the scorer's video blocks run as the segint.VideoBlock custom operator "
        "(scorer.kernel.onnx; same outputs); false: the exported graph. SEGINT_SCORER_KERNEL"
    )
    response_heads: Literal["compiled", "numpy"] = Field(
        description="how the exit distribution and the per-candidate outputs are computed from "
        "the scores: compiled (one pass in the kernels' library) or numpy; the same values "
        "within 1e-12. SEGINT_SCORER_KERNEL=off: numpy"
    )
    cache: Literal["redis", "local"]
    ctr_head: str | None = Field(
        description="backbone/mode of the SegRec CTR head; null without one (no `ctr` in /score)"
    )
    video_table_weight: float | None = Field(
        description="share of the per-video exit table in the served exit distribution of "
        "the videos it holds (watch time, completion, skip); null without a table"
    )
    feature_store_loaded: bool = Field(description="segment content features are served")
    feature_store_videos: int | None = Field(description="videos in the store; null without one")


class Readiness(BaseModel):
    ready: bool
    model_loaded: bool
    cache: Literal["redis", "local"]
    redis_reachable: bool | None = Field(description="null without Redis")
    degraded: bool = Field(description="Redis configured but unreachable: serving from fallback")
