"""The app factory: ``create_app(settings)`` builds the FastAPI app; its lifespan loads the model.

Run it with ``uvicorn --factory service.app:create_app`` (settings from ``SEGINT_*``
environment variables), or call ``create_app(Settings(...))`` in tests. The lifespan opens the
ONNX Runtime sessions and the Redis client, yields them as typed state (no globals, no
``app.state``) and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from export.manifest import Manifest
from service import metrics
from service.cache import LocalStore, RedisStore, UserCache, namespace
from service.deps import AppState
from service.journal import Journal
from service.routes import build_router
from service.schemas import Limits, limited_models
from service.settings import Settings, get_settings
from service.shedding import (
    Overloaded,
    Shedder,
    ShedMiddleware,
    overloaded_handler,
    thread_slice,
)
from service.swap import ModelSwapper, load_ranker
from service.users import UserStates

log = logging.getLogger(__name__)

DESCRIPTION = """\
Segment-level user interest for short videos: for one user and each candidate video, the
interest in every 5-second segment, where the user is likely to leave, how long they will
watch, the best segments for a personalised thumbnail and, when the model was exported with a
SegRec CTR head, the probability of an effective view (`ctr`).

The user side of the model is computed once per user and cached (Redis, or in process);
`POST /events/view` keeps it current. Responses of scoring routes carry a `Server-Timing`
header (cache, queue, handoff, ort, handler; ms).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment).

    The manifest is read here (it fixes the request limits in the OpenAPI schema); the ONNX
    sessions and the cache are opened in the lifespan.

    Raises:
        ArtifactError: no readable artifact at ``settings.artifact_dir``.
    """
    settings = settings or get_settings()
    manifest = Manifest.read(settings.artifact_dir)
    limits = Limits(
        max_candidates=settings.max_candidates,
        max_history=settings.max_history,
        max_duration_ms=manifest.max_duration_ms,
        max_k=settings.max_k,
    )

    shedder = Shedder(
        settings.inference_concurrency,
        settings.inference_queue_max,
        settings.request_deadline_ms / 1e3,
        inference_nice=settings.inference_nice,
        loop_lag_in_deadline=settings.loop_lag_in_deadline,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, AppState]]:
        # Resolved once: a symlink flipped while we load is picked up by the swapper.
        artifact = Path(os.path.realpath(settings.artifact_dir))
        ranker = load_ranker(artifact, settings)
        redis = None
        if settings.redis_url:
            redis = RedisStore.from_url(
                settings.redis_url, settings.redis_timeout_s, settings.cache_ttl_s
            )
        cache = UserCache(
            LocalStore(settings.local_cache_size, int(settings.local_cache_mb * 2**20)),
            redis,
            namespace=namespace(settings.key_prefix, ranker.manifest.model_version),
            retry_after_s=settings.redis_retry_after_s,
        )
        if redis is not None and not await cache.ping():
            log.warning(
                "Redis at %s does not answer; serving from the local fallback", settings.redis_url
            )
        journal = None if settings.journal_path is None else Journal.open(settings.journal_path)
        users = UserStates(
            ranker,
            cache,
            settings.inference_concurrency,
            settings.pending_events_max,
            journal=journal,
            shedder=shedder,
        )
        if journal is not None and journal.recovered:
            n = users.restore(journal.recovered)
            log.warning("%d view events from the outage journal wait for Redis", n)
        elif journal is None and redis is not None:
            log.warning(
                "SEGINT_JOURNAL_PATH is unset: view events acknowledged during a Redis outage "
                "are lost if the process dies before Redis returns"
            )
        metrics.MODEL_INFO.labels(
            ranker.manifest.model_version,
            ranker.provider,
            str(ranker.manifest.opset),
            ranker.manifest.user_stream,
        ).set(1)
        state = AppState(settings, ranker, cache, users)
        replay = asyncio.create_task(
            users.replay_forever(
                max(settings.redis_retry_after_s, 0.2), current=lambda: state.users
            )
        )
        loop_lag = asyncio.create_task(shedder.loop_lag.run_forever())
        swapper = ModelSwapper(state, settings, artifact)
        watch = (
            asyncio.create_task(swapper.watch_forever(settings.model_watch_s))
            if settings.model_watch_s > 0
            else None
        )
        thresholds = gc.get_threshold()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1e3)
        # The lifespan runs on the event loop's thread: its slice is the loop's.
        loop_slice = thread_slice(settings.loop_slice_us / 1e6) if settings.loop_slice_us else None
        if settings.gc_freeze:
            # Start-up objects (sessions, vocabularies, FastAPI's models) never die: move them
            # out of the collector's sight, and collect young objects less often.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, thresholds[1], thresholds[2])
        try:
            yield {"segint": state}
        finally:
            for task in (replay, watch, loop_lag):
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
            if users.pending:
                log.error(
                    "%d users' view events were never replayed into Redis%s",
                    len(users.pending),
                    "; they stay in the journal for the next start" if journal else "",
                )
            if journal is not None:
                journal.close()
            await cache.close()
            shedder.threads.close()
            sys.setswitchinterval(switch_interval)
            if loop_slice is not None:
                thread_slice(0.0)
            if settings.gc_freeze:
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    app = FastAPI(
        title="segint scoring service",
        version=manifest.model_version,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(build_router(limited_models(limits), api_key=settings.api_key is not None))
    app.add_exception_handler(Overloaded, overloaded_handler)
    app.add_exception_handler(StarletteHTTPException, _body_error_is_422)
    app.add_middleware(
        ShedMiddleware,
        shedder=shedder,
        paths=frozenset({"/score", "/thumbnail", "/events/view"}),
    )
    # Outermost last: metrics see every request, shed or too large ones included; the size
    # limit runs before shedding, so an oversized body is a 422 even under overload.
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics)
    return app


class HttpMetrics:
    """Pure ASGI middleware: per-route latency and status metrics of every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")  # a template, never a raw path
            method = scope["method"]
            metrics.REQUEST_DURATION.labels(name, method).observe(time.perf_counter() - t0)
            metrics.REQUESTS.labels(name, method, str(status)).inc()


class BodySizeLimit:
    """Pure ASGI middleware: a body over ``max_body_bytes`` gets a 422 shaped like FastAPI's
    validation errors, named ``body``, before anything parses it; a body without
    Content-Length is counted as it streams in."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limited = await self._limit_body(scope, receive)
        if limited is None:
            await self._too_large(scope, send)
        else:
            await self.app(scope, limited, send)

    async def _limit_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """``receive`` for the app, or None when the body is over the limit."""
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            return receive if length.isdigit() and int(length) <= self.max_body_bytes else None
        if scope["method"] in ("GET", "HEAD"):
            return receive
        # Chunked upload: buffer it (up to the limit) and replay it to the app.
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        return replay

    async def _too_large(self, scope: Scope, send: Send) -> None:
        detail = [
            {
                "type": "too_long",
                "loc": ["body"],
                "msg": f"request body is larger than max_body_bytes={self.max_body_bytes}",
                "input": None,
            }
        ]
        response = JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)
        await response(scope, _drain, send)


async def _body_error_is_422(request: Request, error: Exception) -> Response:
    """FastAPI answers a body it cannot even decode (not UTF-8) with a bare 400; make it the
    422 naming ``body`` that every other bad body gets. Other HTTP errors pass unchanged."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400 and error.detail == "There was an error parsing the body":
        detail = [
            {
                "type": "json_invalid",
                "loc": ["body"],
                "msg": "body is not UTF-8 JSON",
                "input": None,
            }
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, error)


async def _drain() -> Message:
    return {"type": "http.disconnect"}
