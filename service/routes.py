"""HTTP routes: thin handlers over `UserStates` and `Ranker` (their dependencies: `service.deps`).

Handlers are ``async def``: cache calls are awaited and every model run goes through
`UserStates.infer` (a worker thread), so the event loop never blocks on inference. Each
scoring response carries a ``Server-Timing`` header (cache, queue, handoff, ort, handler; ms)
that the benchmark uses to split a request's time into HTTP + validation, Redis, waits for the
inference thread and ONNX Runtime.
"""

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from export.contract import INT8
from segint.segments import segment_bounds_ms
from service.deps import StateDep, UsersDep, require_api_key
from service.history import NO_TIME, History, UserState
from service.kernels.heads import CompiledHeads
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
from service.users import View

# Health, readiness and metrics: the same for every deployment.
probes = APIRouter()


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
    return encode_scores(head, video_ids, s, include, ranker.heads)


def encode_scores(
    head: dict[str, Any],
    video_ids: list[int],
    s: Scores,
    include: frozenset[str],
    compiled: CompiledHeads | None = None,
) -> bytes:
    """The `ScoreResponse` JSON: ``head``, the request-level ``user_unknown`` and one
    `CandidateScore` object per candidate (`CandidateScore.json_array`; ``compiled``: the
    ranker's compiled writer, when it has one)."""
    front = orjson.dumps(head | {"user_unknown": s.user_unknown})  # {...}
    candidates = CandidateScore.json_array(video_ids, s, include, compiled)
    return front[:-1] + b',"candidates":' + candidates + b"}"


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


@probes.get("/healthz", response_model=Health)
async def healthz(state: StateDep) -> Health:
    """Liveness, with the model version, the execution provider and the scorer precision
    actually in use, the CTR head and the feature store."""
    ranker = state.ranker
    ctr = ranker.ctr.spec if ranker.ctr is not None else None
    return Health(
        status="ok",
        model_version=ranker.manifest.model_version,
        provider=ranker.provider,
        user_stream=ranker.manifest.user_stream,
        scorer_precision="int8" if ranker.precision == INT8 else "fp32",
        scorer_kernel=ranker.kernel,
        response_heads="numpy" if ranker.heads is None else "compiled",
        cache="redis" if state.cache.redis is not None else "local",
        ctr_head=None if ctr is None else f"{ctr.backbone}/{ctr.mode}",
        video_table_weight=None if ranker.video_table is None else ranker.video_table.weight,
        feature_store_loaded=ranker.content is not None,
        feature_store_videos=None if ranker.content is None else len(ranker.content.store),
    )


@probes.get("/readyz", response_model=Readiness)
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


@probes.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}},
)
async def prometheus_metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_router(models: RequestModels, api_key: bool = False) -> APIRouter:
    """All routes, with request bodies bound to the limit-bearing models of this app.

    Declared with decorators, here rather than at module level because the body models
    (`service.schemas.limited_models`) carry the deployment's limits (most candidates, the
    model's longest video), which the OpenAPI schema must state and which are known only
    once the artifact is read. Each route delegates to its handler above.

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
    score_body, thumbnail_body, view_body = models.score, models.thumbnail, models.view

    @router.post(
        "/score",
        response_model=ScoreResponse,
        summary="Score candidate videos for one user",
        responses=scoring,
    )
    async def score_route(body: score_body, users: UsersDep) -> Response:  # type: ignore[valid-type]
        return await score(body, users)

    @router.post(
        "/thumbnail",
        response_model=ThumbnailResponse,
        summary="Top-k thumbnail segments of a video for one user",
        responses=scoring,
    )
    async def thumbnail_route(
        body: thumbnail_body,  # type: ignore[valid-type]
        users: UsersDep,
        response: Response,
    ) -> ThumbnailResponse:
        return await thumbnail(body, users, response)

    @router.post(
        "/events/view",
        response_model=ViewResponse,
        summary="Record a finished view (idempotent on user, video, time)",
        dependencies=[Depends(require_api_key)] if api_key else [],
        responses=scoring | keyed,
    )
    async def record_view_route(body: view_body, users: UsersDep) -> ViewResponse:  # type: ignore[valid-type]
        return await record_view(body, users)

    router.include_router(probes)
    return router


def _server_timing(t: Timings, t0: float) -> str:
    handler_ms = (time.perf_counter() - t0) * 1e3
    return (
        f"cache;dur={t.cache_s * 1e3:.3f}, queue;dur={t.queue_s * 1e3:.3f}, "
        f"handoff;dur={t.handoff_s * 1e3:.3f}, ort;dur={t.ort_s * 1e3:.3f}, "
        f"handler;dur={handler_ms:.3f}"
    )
