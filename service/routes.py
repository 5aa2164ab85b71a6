"""HTTP routes: thin handlers over `UserStates` and `Ranker`, plus their dependencies.

Handlers are ``async def``: cache calls are awaited and every model run goes through
`UserStates.infer` (a worker thread), so the event loop never blocks on inference. Each
scoring response carries a ``Server-Timing`` header (cache, queue, ort, handler; ms) that the
benchmark uses to split a request's time into HTTP + validation, Redis and ONNX Runtime.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from segint.segments import segment_bounds_ms
from service.cache import UserCache
from service.history import NO_TIME, History, UserState
from service.ranker import Ranker, Scores, Timings, top_segments
from service.schemas import (
    CandidateScore,
    Health,
    Readiness,
    RequestModels,
    ScoreRequest,
    ScoreResponse,
    ThumbnailRequest,
    ThumbnailResponse,
    ThumbnailSegment,
    ViewEvent,
    ViewResponse,
)
from service.settings import Settings
from service.users import UserStates, View


@dataclass
class AppState:
    """What the lifespan opens and yields; handlers reach it through the dependencies.

    Not frozen: a model swap (`service.swap`) replaces ``ranker``, ``cache`` and ``users``
    together in one step of the event loop. A handler reads ``users`` once (its dependency),
    so one request is served by one model.
    """

    settings: Settings
    ranker: Ranker
    cache: UserCache
    users: UserStates


async def _app_state(request: Request) -> AppState:
    # async: a plain `def` dependency would cost a thread-pool hop per request.
    state: AppState = request.state.segint
    return state


StateDep = Annotated[AppState, Depends(_app_state)]


async def _users(state: StateDep) -> UserStates:
    return state.users


async def _ranker(state: StateDep) -> Ranker:
    return state.ranker


UsersDep = Annotated[UserStates, Depends(_users)]
RankerDep = Annotated[Ranker, Depends(_ranker)]
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(
    state: StateDep, key: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """401 unless the configured API key (if any) came in the X-API-Key header."""
    expected = state.settings.api_key
    if expected is None:
        return
    if key is None or not hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )


async def score(body: ScoreRequest, users: UsersDep) -> Response:
    """Score every candidate for one user (one scorer run per length bucket, and with a CTR
    head one more run over all candidates); the JSON body is built in the same worker thread
    as the model runs, so a large response never blocks the event loop."""
    t0, timings = time.perf_counter(), Timings()
    history = None
    if body.history:
        h = body.history
        history = History.from_views(
            [v.video_id for v in h],
            [v.duration_ms for v in h],
            [v.play_time_ms for v in h],
            [NO_TIME if v.time_ms is None else v.time_ms for v in h],
            cap=users.ranker.history_cap,
        )
    resolved = await users.resolve(body.user_id, history, timings)
    head = {
        "model_version": users.ranker.manifest.model_version,
        "history_source": resolved.source,
        "history_length": len(resolved.state.history),
        "cache_degraded": resolved.degraded,
    }
    content = await users.infer(
        timings,
        _score_json,
        users.ranker,
        body.user_id,
        resolved.state,
        [c.video_id for c in body.candidates],
        [c.duration_ms for c in body.candidates],
        frozenset(body.include),
        head,
        timings,
    )
    return Response(
        content,
        media_type="application/json",
        headers={"Server-Timing": _server_timing(timings, t0)},
    )


def _score_json(
    ranker: Ranker,
    user_id: int,
    state: UserState,
    video_ids: list[int],
    duration_ms: list[int],
    include: frozenset[str],
    head: dict[str, Any],
    timings: Timings,
) -> bytes:
    """`Ranker.score` and the `ScoreResponse` JSON of its result (blocking: a worker's)."""
    s = ranker.score(user_id, state, video_ids, duration_ms, timings)
    return encode_scores(head, video_ids, s, include)


def encode_scores(
    head: dict[str, Any], video_ids: list[int], s: Scores, include: frozenset[str]
) -> bytes:
    """The `ScoreResponse` JSON: ``head``, the request-level ``user_unknown`` and one
    `CandidateScore` object per candidate, written by orjson."""
    body = head | {
        "user_unknown": s.user_unknown,
        "candidates": CandidateScore.from_scores(video_ids, s, include),
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


async def thumbnail(
    body: ThumbnailRequest, users: UsersDep, response: Response
) -> ThumbnailResponse:
    """The top-k segments of one video for one user, at least ``min_gap_segments`` apart."""
    t0, timings = time.perf_counter(), Timings()
    resolved = await users.resolve(body.user_id, None, timings)
    s = await users.infer(
        timings,
        users.ranker.score,
        body.user_id,
        resolved.state,
        [body.video_id],
        [body.duration_ms],
        timings,
        with_ctr=False,
    )
    n = int(s.n_segments[0])
    segments = []
    for j in top_segments(s.logits[0], n, body.k, body.min_gap_segments):
        start, end = segment_bounds_ms(j, body.duration_ms)
        segments.append(
            ThumbnailSegment(index=j, start_ms=start, end_ms=end, score=float(s.logits[0, j]))
        )
    response.headers["Server-Timing"] = _server_timing(timings, t0)
    return ThumbnailResponse(
        model_version=users.ranker.manifest.model_version,
        video_id=body.video_id,
        user_unknown=s.user_unknown,
        video_unknown=bool(s.video_unknown[0]),
        n_segments=n,
        cache_degraded=resolved.degraded,
        segments=segments,
    )


async def record_view(body: ViewEvent, users: UsersDep) -> ViewResponse:
    """Append a finished view to the user's history and recompute their cached state."""
    view = View(body.video_id, body.duration_ms, body.play_time_ms, body.time_ms)
    rec = await users.record_view(body.user_id, view)
    return ViewResponse(
        user_id=body.user_id,
        applied=rec.applied,
        history_length=rec.history_length,
        cache_degraded=rec.degraded,
    )


async def healthz(state: StateDep) -> Health:
    """Liveness, with the model version, the execution provider actually in use, the CTR
    head and the feature store."""
    ranker = state.ranker
    ctr = ranker.ctr.spec if ranker.ctr is not None else None
    return Health(
        status="ok",
        model_version=ranker.manifest.model_version,
        provider=ranker.provider,
        user_stream=ranker.manifest.user_stream,
        cache="redis" if state.cache.redis is not None else "local",
        ctr_head=None if ctr is None else f"{ctr.backbone}/{ctr.mode}",
        feature_store_loaded=ranker.content is not None,
        feature_store_videos=None if ranker.content is None else len(ranker.content.store),
    )


async def readyz(state: StateDep) -> Readiness:
    """Ready once the model is loaded; Redis down is degraded (fallback), not unready."""
    reachable = await state.cache.ping() if state.cache.redis is not None else None
    return Readiness(
        ready=True,
        model_loaded=True,
        cache="redis" if state.cache.redis is not None else "local",
        redis_reachable=reachable,
        degraded=reachable is False,
    )


async def prometheus_metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_router(models: RequestModels, api_key: bool = False) -> APIRouter:
    """All routes, with request bodies bound to the limit-bearing models of this app.

    ``api_key``: whether a key is configured; only then does ``/events/view`` declare (and
    check) the ``X-API-Key`` security scheme.
    """
    router = APIRouter()
    scoring: dict[int | str, dict[str, Any]] = {
        422: {"description": "invalid request; `detail[].loc` names the field"},
        503: {
            "description": "overloaded: shed instead of queued; retry after `Retry-After` s",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        },
    }
    keyed: dict[int | str, dict[str, Any]] = (
        {401: {"description": "X-API-Key missing or wrong"}} if api_key else {}
    )
    router.add_api_route(
        "/score",
        _with_body(score, models.score),
        methods=["POST"],
        response_model=ScoreResponse,
        summary="Score candidate videos for one user",
        responses=scoring,
    )
    router.add_api_route(
        "/thumbnail",
        _with_body(thumbnail, models.thumbnail),
        methods=["POST"],
        response_model=ThumbnailResponse,
        summary="Top-k thumbnail segments of a video for one user",
        responses=scoring,
    )
    router.add_api_route(
        "/events/view",
        _with_body(record_view, models.view),
        methods=["POST"],
        response_model=ViewResponse,
        summary="Record a finished view (idempotent on user, video, time)",
        dependencies=[Depends(require_api_key)] if api_key else [],
        responses=scoring | keyed,
    )
    router.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health)
    router.add_api_route("/readyz", readyz, methods=["GET"], response_model=Readiness)
    router.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}},
    )
    return router


def _with_body(
    endpoint: Callable[..., Awaitable[Any]], model: type[BaseModel]
) -> Callable[..., Awaitable[Any]]:
    """A copy of ``endpoint`` whose ``body`` parameter is declared as ``model``.

    FastAPI reads the request model from the signature. ``model`` is a subclass of the
    declared one that only adds bounds, so the handler's own annotation stays true.
    """

    @functools.wraps(endpoint)
    async def bound(*args: Any, **kwargs: Any) -> Any:
        return await endpoint(*args, **kwargs)

    sig = inspect.signature(endpoint, eval_str=True)
    params = [
        p.replace(annotation=model) if p.name == "body" else p for p in sig.parameters.values()
    ]
    bound.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return bound


def _server_timing(t: Timings, t0: float) -> str:
    handler_ms = (time.perf_counter() - t0) * 1e3
    return (
        f"cache;dur={t.cache_s * 1e3:.3f}, queue;dur={t.queue_s * 1e3:.3f}, "
        f"ort;dur={t.ort_s * 1e3:.3f}, handler;dur={handler_ms:.3f}"
    )
