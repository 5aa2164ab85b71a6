"""Load shedding: the bounded, deadline-aware inference queue and its 503 answers."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service import app as app_module
from service import shedding
from service.app import create_app
from service.settings import Settings
from service.shedding import (
    Budget,
    InferenceThreads,
    LoopLag,
    Overloaded,
    Shedder,
    ShedMiddleware,
)

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


def test_an_admitted_request_stuck_in_the_queue_gets_503_at_twice_its_deadline(
    make_settings: Callable[..., Settings],
) -> None:
    """With the slot held and no run time known yet (nothing ahead to outlast the deadline)
    the door admits a request; the slot never frees, and at twice its 50 ms deadline it gets
    a 503 ``overrun`` from the handler (not a 500). A free slot is taken however late the
    request is."""
    app = create_app(make_settings(request_deadline_ms=50))
    with TestClient(app) as client:
        with _slot_taken(client, _shedder(app)):
            t0 = time.monotonic()
            r = client.post("/score", json=SCORE)
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert "overrun" in r.json()["detail"] and time.monotonic() - t0 >= 0.1
        assert client.post("/score", json=SCORE).status_code == 200


def _door(shedder: Shedder, reached: list[Budget]) -> Callable[[], Awaitable[list[dict]]]:  # type: ignore[type-arg]
    """A `ShedMiddleware` over an app that records its request's budget and takes a slot
    (as `/score` does after parsing); each call returns what was sent."""

    async def app(scope: dict, receive: object, send: Callable[..., Awaitable[None]]) -> None:  # type: ignore[type-arg]
        budget = shedding._BUDGET.get()
        assert budget is not None
        reached.append(budget)
        try:
            async with shedder.slot():
                status = 200
        except Overloaded as e:
            status = 503
            body = e.reason.encode()
        else:
            body = b"{}"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    middleware = ShedMiddleware(app, shedder, frozenset({"/score"}))  # type: ignore[arg-type]

    async def call() -> list[dict]:  # type: ignore[type-arg]
        sent: list[dict] = []  # type: ignore[type-arg]

        async def send(message: dict) -> None:  # type: ignore[type-arg]
            sent.append(message)

        scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
        await middleware(scope, None, send)  # type: ignore[arg-type]
        return sent

    return call


async def test_a_request_admitted_at_the_door_is_not_refused_at_its_deadline() -> None:
    """The door predicts a 30 ms wait against a 200 ms deadline and admits; the run ahead then
    takes 250 ms (longer than the deadline, shorter than twice it): the request waits and is
    served, not refused after parsing as round 2 did."""
    shedder = Shedder(concurrency=1, queue_max=10, deadline_s=0.2)
    shedder.mean_run_s = 0.03
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))
    await started.wait()
    reached: list[Budget] = []
    call = asyncio.create_task(_door(shedder, reached)())
    await asyncio.sleep(0.25)
    assert not call.done() and shedder.waiting == 1 and reached[0].door
    release.set()
    await holder
    sent = await asyncio.wait_for(call, 1.0)
    assert sent[0]["status"] == 200 and reached[0].admitted


async def test_the_door_counts_the_time_to_reach_the_queue() -> None:
    """One run ahead with 40 ms left and a 100 ms deadline: admitted while requests take
    little time to reach the queue; refused at the door (never reaching the app) once they
    take 70 ms (70 + 40 > 100). The door-to-queue time is measured on admitted requests."""
    shedder = Shedder(concurrency=1, queue_max=10, deadline_s=0.1)
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))
    await started.wait()
    shedder.mean_run_s = 0.04 + (time.monotonic() - shedder._running[0])
    reached: list[Budget] = []
    door = _door(shedder, reached)
    shedder.mean_pre_s = 0.07
    sent = await door()
    assert sent[0]["status"] == 503 and b"deadline" in sent[1]["body"] and not reached
    shedder.mean_pre_s = 0.01
    call = asyncio.create_task(door())
    await asyncio.sleep(0.02)
    assert len(reached) == 1 and shedder.waiting == 1
    # Its own time from the door to the queue (near 0 here) went into the mean.
    assert shedder.mean_pre_s < 0.01
    release.set()
    await holder
    assert (await asyncio.wait_for(call, 1.0))[0]["status"] == 200


async def test_the_first_run_sets_the_mean_run_time_whole() -> None:
    """A cold shedder's mean run time is its first run's time, not a tenth of it; later runs
    move it by the EWMA weight."""
    shedder = Shedder(concurrency=1, queue_max=10, deadline_s=1.0)
    async with shedder.slot():
        await asyncio.sleep(0.05)
    first = shedder.mean_run_s
    assert first >= 0.05
    async with shedder.slot():
        pass
    assert 0.85 * first <= shedder.mean_run_s < first


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


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
async def test_inference_runs_in_threads_nicer_than_the_event_loop() -> None:
    """`InferenceThreads` lowers its threads' priority by ``nice`` levels (capped at 19), not
    the caller's, and passes the result back; nice 0 leaves them at the caller's."""
    loop_nice = _nice()
    threads = InferenceThreads(1, nice=5)
    try:
        assert await threads.run(_nice) == min(19, loop_nice + 5)
        assert _nice() == loop_nice
    finally:
        threads.close()
    same = InferenceThreads(1, nice=0)
    try:
        assert await same.run(_nice) == loop_nice
    finally:
        same.close()


async def test_a_refused_priority_change_is_logged_once_and_inference_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where lowering the priority is not permitted (EPERM), the threads run anyway and the
    refusal is logged once per process, not once per thread."""

    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(shedding.os, "setpriority", refuse)
    monkeypatch.setattr(InferenceThreads, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="service.shedding"):
        for _ in range(2):
            threads = InferenceThreads(2, nice=10)
            try:
                assert await threads.run(lambda: 42) == 42
            finally:
                threads.close()
    warnings = [r for r in caplog.records if "cannot lower" in r.getMessage()]
    assert len(warnings) == 1 and "not permitted" in warnings[0].getMessage()


async def test_a_cancelled_caller_waits_for_its_run_to_end() -> None:
    """Cancelling the caller (a client gone) does not return before the model run in the
    thread ends: the inference slot is never freed while its run goes on."""
    threads = InferenceThreads(1, nice=0)
    running, release = threading.Event(), threading.Event()

    def run() -> str:
        running.set()
        release.wait(5)
        return "done"

    ended: list[str] = []

    async def caller() -> None:
        ended.append(await threads.run(run))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.to_thread.run_sync(running.wait, 5)
            tg.cancel_scope.cancel()
            await asyncio.sleep(0.05)
            assert not ended  # still waiting for the run, though cancelled
            release.set()
        assert ended == ["done"]
    finally:
        release.set()
        threads.close()


async def test_inference_threads_pass_errors_back_run_side_by_side_and_restart() -> None:
    """A run's exception is raised in its caller (the thread lives on); ``n`` threads run
    ``n`` calls at once; after `close` the threads end and a later run starts new ones."""
    threads = InferenceThreads(2, nice=0)

    def fail() -> None:
        raise KeyError("no such video")

    both = threading.Barrier(2, timeout=5)  # passes only when two runs are in threads at once

    def meet() -> threading.Thread:
        both.wait()
        return threading.current_thread()

    try:
        with pytest.raises(KeyError, match="no such video"):
            await threads.run(fail)
        assert await threads.run(lambda: 7) == 7
        ran = await asyncio.gather(threads.run(meet), threads.run(meet))
        assert len(set(ran)) == 2 and all(t.name.startswith("segint-inference") for t in ran)
        threads.close()
        for t in ran:  # this pool's threads (other tests' pools may still be alive)
            t.join(5)
            assert not t.is_alive()
        assert await threads.run(lambda: "again") == "again"
    finally:
        threads.close()


async def test_loop_lag_reads_how_late_the_loop_runs() -> None:
    """While the loop is blocked, `LoopLag.now` grows with the overdue tick; the tick after
    records it; an idle loop reads near zero again. Before it is started it reads 0."""
    lag = LoopLag(interval_s=0.005)
    assert lag.now() == 0.0
    task = asyncio.create_task(lag.run_forever())
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # the loop is busy: the tick due meanwhile has not run
        assert lag.now() >= 0.09
        await asyncio.sleep(0.001)  # the late tick runs
        assert lag.last_s >= 0.09
        await asyncio.sleep(0.05)  # idle ticks
        assert lag.now() < 0.09
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert lag.now() == 0.0


@pytest.mark.parametrize("counted", [True, False])
async def test_the_deadline_clock_starts_as_early_as_the_loop_is_late(counted: bool) -> None:
    """Slot busy, room to queue, 100 ms deadline, nothing known about run times: a request
    read by a loop 150 ms late has no time left and is refused by the middleware when the
    lag counts (``loop_lag_in_deadline``); when it does not, the request goes on to the app.
    """
    shedder = Shedder(concurrency=1, queue_max=10, deadline_s=0.1, loop_lag_in_deadline=counted)
    shedder.loop_lag.last_s = 0.15
    reached: list[float] = []

    async def app(scope: dict, receive: object, send: Callable[..., object]) -> None:  # type: ignore[type-arg]
        budget = shedding._BUDGET.get()
        assert budget is not None
        reached.append(budget.deadline - time.monotonic())
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    middleware = ShedMiddleware(app, shedder, frozenset({"/score"}))  # type: ignore[arg-type]
    sent: list[dict] = []  # type: ignore[type-arg]

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    scope = {"type": "http", "path": "/score", "method": "POST", "headers": []}
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(shedder, started, release))
    await started.wait()
    await middleware(scope, None, send)  # type: ignore[arg-type]
    if counted:
        assert sent[0]["status"] == 503 and b"deadline" in sent[1]["body"] and not reached
    else:
        assert sent[0]["status"] == 200 and 0.05 < reached[0] <= 0.1
    release.set()
    await holder
    # A free slot is taken however late the loop is (its clock already started earlier).
    sent.clear()
    await middleware(scope, None, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 200
    assert reached[-1] < 0 if counted else reached[-1] > 0.05


def test_the_lifespan_sets_the_gil_switch_interval_and_restores_it(
    make_settings: Callable[..., Settings],
) -> None:
    """``gil_switch_interval_ms`` is the process's switch interval while the app runs; the
    previous one is back after shutdown (tests and embedders share the process)."""
    before = sys.getswitchinterval()
    with TestClient(create_app(make_settings(gil_switch_interval_ms=2.5))) as client:
        assert client.get("/healthz").status_code == 200
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    assert sys.getswitchinterval() == before


def _in_thread(fn: Callable[[], object]) -> object:
    """``fn()`` in a new thread (a slice belongs to a thread, not to the test process)."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@pytest.mark.skipif(sys.platform != "linux", reason="sched_setattr is Linux's")
def test_thread_slice_sets_the_calling_threads_slice_and_zero_restores_the_default() -> None:
    """`thread_slice` sets the calling thread's slice (read back), keeps its nice value, and
    0 restores the kernel's default; another thread's slice is untouched."""
    default = shedding.thread_slice()
    assert default is not None and default > 0

    def set_then_reset() -> tuple[float | None, float | None, int, float | None]:
        nice = _nice()
        short = shedding.thread_slice(0.0003)
        assert _nice() == nice
        return short, shedding.thread_slice(), _nice(), shedding.thread_slice(0.0)

    short, read, nice, reset = _in_thread(set_then_reset)  # type: ignore[misc]
    assert short == pytest.approx(0.0003) and read == pytest.approx(0.0003)
    assert reset == pytest.approx(default) and nice == _nice()
    assert shedding.thread_slice() == pytest.approx(default)


def test_a_system_without_sched_setattr_logs_once_and_returns_none(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where there is no ``sched_setattr`` (another OS or CPU) the slice is left alone, None
    comes back, and the refusal is logged once per process."""
    monkeypatch.setattr(shedding.platform, "machine", lambda: "vax")
    monkeypatch.setattr(shedding, "_slice_warned", False)
    with caplog.at_level(logging.WARNING, logger="service.shedding"):
        assert shedding.thread_slice(0.0005) is None
        assert shedding.thread_slice(0.0005) is None
    assert len([r for r in caplog.records if "scheduler slice" in r.getMessage()]) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="sched_setattr is Linux's")
def test_the_lifespan_sets_the_event_loops_slice_and_restores_it(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``loop_slice_us`` is the slice of the thread running the event loop while the app
    runs; at shutdown that thread gets the default back (0). Unset, nothing is touched."""
    calls: list[tuple[float | None, int]] = []

    def recorded(slice_s: float | None = None) -> float | None:
        calls.append((slice_s, threading.get_native_id()))
        return shedding.thread_slice(slice_s)

    monkeypatch.setattr(app_module, "thread_slice", recorded)
    with TestClient(create_app(make_settings(loop_slice_us=400))) as client:
        assert client.portal is not None
        assert client.portal.call(_loop_slice) == pytest.approx(0.0004)
        assert client.get("/healthz").status_code == 200
    assert [c[0] for c in calls] == [0.0004, 0.0] and calls[0][1] == calls[1][1]
    calls.clear()
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/healthz").status_code == 200
    assert calls == []


async def _loop_slice() -> float | None:
    return shedding.thread_slice()
