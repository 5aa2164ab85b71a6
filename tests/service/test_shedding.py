"""Load shedding: the bounded, deadline-aware inference queue and its 503 answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service import shedding
from service.app import create_app
from service.settings import Settings
from service.shedding import Overloaded, Shedder, ShedMiddleware

pytestmark = pytest.mark.anyio

SCORE = {"user_id": 1, "candidates": [{"video_id": 1, "duration_ms": 9000}]}


async def _hold(shedder: Shedder, started: asyncio.Event, release: asyncio.Event) -> None:
    async with shedder.slot():
        started.set()
        await release.wait()


async def test_a_full_queue_sheds_at_once_and_background_work_only_waits() -> None:
    """One slot busy, one request queued (queue_max 1): the next request is refused without
    waiting; work outside a request (no deadline) queues instead."""
    shedder = Shedder(concurrency=1, queue_max=1, deadline_s=10.0)
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))  # background: no deadline
    await started.wait()
    token = shedding._BUDGET.set(shedding.Budget(time.monotonic() + 10))
    try:
        queued = asyncio.create_task(_hold(shedder, asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0.01)
        assert shedder.waiting == 1
        t0 = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            async with shedder.slot():
                pass
        assert refused.value.reason == "queue_full" and time.perf_counter() - t0 < 0.01
    finally:
        shedding._BUDGET.reset(token)
    background = asyncio.create_task(_hold(shedder, asyncio.Event(), asyncio.Event()))
    await asyncio.sleep(0.01)
    # Queued past queue_max, not shed (and not counted: it has no deadline to estimate for).
    assert not background.done() and shedder.waiting == 1
    for task in (queued, background):
        task.cancel()
    release.set()
    await holder
    await asyncio.gather(queued, background, return_exceptions=True)
    assert shedder.waiting == 0 and shedder.limiter.borrowed_tokens == 0


async def test_a_request_that_cannot_start_before_its_deadline_is_shed() -> None:
    """Shed at once when the runs ahead of it would outlast its deadline; shed when its wait
    passes the deadline; the slot is free again afterwards."""
    shedder = Shedder(concurrency=1, queue_max=100, deadline_s=0.05)
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))
    await started.wait()
    token = shedding._BUDGET.set(shedding.Budget(time.monotonic() + 0.05))
    try:
        shedder.mean_run_s = 0.0  # no estimate yet: it waits, then gives up at the deadline
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="deadline"):
            async with shedder.slot():
                pass
        assert 0.03 < time.perf_counter() - t0 < 0.5
        shedding._BUDGET.set(shedding.Budget(time.monotonic() + 0.05))
        shedder.mean_run_s = 1.0  # one run ahead takes 1 s > 50 ms left: refused at once
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="deadline"):
            async with shedder.slot():
                pass
        assert time.perf_counter() - t0 < 0.01
    finally:
        shedding._BUDGET.reset(token)
    release.set()
    await holder
    assert shedder.limiter.borrowed_tokens == 0 and shedder.waiting == 0
    with anyio.fail_after(1):
        async with shedder.slot():  # free again
            pass


def _shedder(app: FastAPI) -> Shedder:
    (shedder,) = [m.kwargs["shedder"] for m in app.user_middleware if m.cls is ShedMiddleware]
    return shedder  # type: ignore[no-any-return]


@contextmanager
def _slot_taken(client: TestClient, shedder: Shedder) -> Iterator[None]:
    """The only inference slot held by someone else, in the app's event loop."""
    borrower = object()
    assert client.portal is not None
    client.portal.call(shedder.limiter.acquire_on_behalf_of_nowait, borrower)
    try:
        yield
    finally:
        client.portal.call(shedder.limiter.release_on_behalf_of, borrower)


def test_shed_requests_get_503_with_retry_after_and_are_counted(
    make_settings: Callable[..., Settings],
) -> None:
    """The slot busy and no queue allowed: a scoring call is refused before parsing (503,
    Retry-After, segint_shed_total); health, readiness and metrics are never shed; once the
    slot is free the same call is served."""
    app = create_app(make_settings(inference_queue_max=0))
    with TestClient(app) as client:
        with _slot_taken(client, _shedder(app)):
            r = client.post("/score", json=SCORE)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "overloaded (queue_full)" in r.json()["detail"]
            for path in ("/healthz", "/readyz", "/metrics"):
                assert client.get(path).status_code == 200
            metrics = client.get("/metrics").text
            assert 'segint_shed_total{reason="queue_full"}' in metrics
        assert client.post("/score", json=SCORE).status_code == 200


def test_a_request_that_waits_past_its_deadline_gets_503(
    make_settings: Callable[..., Settings],
) -> None:
    """With the slot busy, a request queues; when its 50 ms deadline passes it gets a 503
    (from the handler, not a 500). A free slot is taken however late the request is."""
    app = create_app(make_settings(request_deadline_ms=50))
    with TestClient(app) as client:
        with _slot_taken(client, _shedder(app)):
            r = client.post("/score", json=SCORE)
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert "deadline" in r.json()["detail"]
        assert client.post("/score", json=SCORE).status_code == 200


async def test_an_admitted_request_finishes_even_past_its_deadline() -> None:
    """After its first run (the user encoder) a request's next run (the scorer) is queued,
    not shed, even once the deadline has passed: dropping it then would waste the work."""
    shedder = Shedder(concurrency=1, queue_max=1, deadline_s=0.01)
    budget = shedding.Budget(time.monotonic() + 0.01)
    token = shedding._BUDGET.set(budget)
    try:
        async with shedder.slot():
            await asyncio.sleep(0.02)  # past the deadline now
        shedder.mean_run_s = 10.0
        async with shedder.slot():
            pass
    finally:
        shedding._BUDGET.reset(token)
    assert budget.admitted


async def test_requests_on_their_way_to_the_queue_count_for_the_next_arrival() -> None:
    """The slot busy and room for one waiter: a request that passed the middleware and is
    still being read (not queued yet) holds that room, so the next arrival is refused by the
    middleware itself (503, never reaching the app); once the first ends its place frees."""
    shedder = Shedder(concurrency=1, queue_max=1, deadline_s=10.0)
    reading, finish = asyncio.Event(), asyncio.Event()
    reached: list[str] = []

    async def app(scope: dict, receive: object, send: Callable[..., object]) -> None:  # type: ignore[type-arg]
        reached.append(scope["path"])
        reading.set()
        await finish.wait()  # "parsing the body": not in the queue yet
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    middleware = ShedMiddleware(app, shedder, frozenset({"/score"}))  # type: ignore[arg-type]
    sent: list[list[dict]] = [[], []]  # type: ignore[type-arg]

    def call(i: int) -> asyncio.Task[None]:
        async def send(message: dict) -> None:  # type: ignore[type-arg]
            sent[i].append(message)

        scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
        return asyncio.create_task(middleware(scope, None, send))  # type: ignore[arg-type]

    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))
    await started.wait()
    first = call(0)
    await reading.wait()
    assert shedder.reserved == 1 and shedder.waiting == 0
    await asyncio.wait_for(call(1), 2.0)  # refused without waiting for the first
    assert sent[1][0]["status"] == 503 and reached == ["/score"]
    assert b"queue_full" in sent[1][1]["body"]
    finish.set()
    await first
    assert sent[0][0]["status"] == 200 and shedder.reserved == 0
    release.set()
    await holder
