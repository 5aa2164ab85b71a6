"""Load shedding: a bounded inference queue and a per-request deadline.

Every model run of a request goes through `Shedder.slot`: at most ``concurrency`` runs at
once, at most ``queue_max`` requests waiting for one. The decision is taken once, at the door
(`ShedMiddleware`, before the body is read): a request is refused there (HTTP 503 with
``Retry-After``, counted in ``segint_shed_total{reason}``) when

* it would have to wait and the queue is full (``queue_full``), or
* it would not start before its deadline: the time it still needs to reach the queue (the
  mean of recent requests' reading and parsing), plus what the running runs have left and a
  mean run per request ahead of it, divided by ``concurrency``, exceeds the deadline
  (``deadline``; the means are exponentially weighted averages).

A free slot is always taken, whatever the time left. A request admitted at the door is not
refused later at its deadline (round 2 refused about 10% of its sheds that way, after parsing,
each after waiting out the whole deadline): it waits for its slot, and gives up only when it
has not started by twice its deadline (``overrun``: the prediction was far off, a run much
slower than the mean or a stuck model). The deadline is for getting the first slot: an
admitted request's later runs (the scorer after the user encoder) queue without one, since
shedding it then wastes work. The deadline starts when the request arrives, so the time spent
parsing and reading the cache counts. Work without a request (the outage replay, the warm-up
of a new model) has no deadline and is never shed, only queued.

Refusing early is the point: past saturation a queue only grows, and every caller would wait
out the whole queue and time out together. Shedding keeps the accepted requests' latency near
the unloaded one and tells the others, in about a millisecond, to come back later.

Refusing on time needs the event loop on time: the model runs (`Shedder.run`) in
`InferenceThreads`, worker threads whose Linux nice value can be raised (``inference_nice``),
so that on a replica's one core the loop (accepting connections, parsing HTTP, refusing)
preempts inference whenever bytes arrive, instead of sharing the core with it half and half
while arrivals wait in the socket backlog, unseen by the deadline clock. It is off by default:
on an idle one-core replica it bought no accepted latency and cost throughput
(docs/reliability.md, the idle-machine rerun); it helped the loop on a loaded, shared core. What the loop still runs
late (`LoopLag`: how overdue a 10 ms tick is) is time a request waited before the middleware
saw it; with ``loop_lag_in_deadline`` the deadline clock starts that much earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics


class Budget:
    """A request's deadline; once it got a slot the request is admitted and its later model
    runs (user encoder, then scorer) are queued, never shed: dropping it then wastes work.

    ``door``: the middleware admitted it, predicting it starts in time; that decision is
    final, and it is refused later only if it has not started by twice its deadline (the
    prediction was far off: a run much slower than the mean, a stuck model)."""

    def __init__(self, deadline: float, arrived: float | None = None, door: bool = False) -> None:
        self.deadline = deadline
        self.arrived = time.monotonic() if arrived is None else arrived
        self.door = door
        self.admitted = False
        self.reserved = False  # counted in `Shedder.reserved` (passed the middleware's check)


_BUDGET: ContextVar[Budget | None] = ContextVar("segint_request_budget", default=None)
_EWMA_WEIGHT = 0.1  # weight of the newest run in the mean run time
_NICEST = 19  # Linux's lowest priority
T = TypeVar("T")
log = logging.getLogger(__name__)


class InferenceThreads:
    """``n`` worker threads for the model runs, each ``nice`` levels nicer (lower priority)
    than the thread that started the pool, so the event loop wins the core whenever it has
    work. Per-thread nice values are a Linux feature (``setpriority`` on a thread id); where
    it is refused or missing, it is logged once and the threads run at the loop's priority.

    Only the thread that calls ``session.run`` is lowered: with ``intra_op_threads`` 1 (the
    shipped setting) that is all of inference; ORT's own pool threads (more than 1) are not.
    Lowering is a one-way door (raising it back needs ``CAP_SYS_NICE``), hence threads of
    their own rather than anyio's shared pool.
    """

    _warned = False

    def __init__(self, n: int, nice: int = 0) -> None:
        self.n = n
        self.nice = nice
        # (loop, future, fn) per run; None tells one thread to stop. None: no threads yet.
        self._queue: queue.SimpleQueue[_Run | None] | None = None

    def lower_priority(self) -> int | None:
        """Make the calling thread ``nice`` levels nicer (capped at 19); returns its nice
        value, or None when the system refused (logged once per process)."""
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            if self.nice:
                os.setpriority(os.PRIO_PROCESS, tid, min(_NICEST, current + self.nice))
            return os.getpriority(os.PRIO_PROCESS, tid)
        except (OSError, AttributeError) as e:  # EPERM, or no per-thread priorities here
            if not InferenceThreads._warned:
                InferenceThreads._warned = True
                log.warning(
                    "cannot lower the inference threads' priority (%s): inference competes "
                    "with the event loop for the CPU, and shed answers may be slow",
                    e,
                )
            return None

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the threads. Like `anyio.to_thread.run_sync`, cancelling the
        caller waits for the run to end (a slot is never freed while its run goes on).

        The hand-off is a queue in and ``call_soon_threadsafe`` on the caller's own future
        out: one loop wake-up per run, where `ThreadPoolExecutor` + `asyncio.wrap_future`
        pass the result through a second future and a callback chain (`bench/bench_handoff.py`,
        one core: 97 against 52 us a round trip)."""
        if self._queue is None:
            self._queue = queue.SimpleQueue()
            for i in range(self.n):
                threading.Thread(
                    target=self._work,
                    args=(self._queue,),
                    name=f"segint-inference_{i}",
                    daemon=True,
                ).start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn))
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    def _work(self, runs: queue.SimpleQueue[_Run | None]) -> None:
        """One thread: run what arrives until told to stop."""
        self.lower_priority()
        while (item := runs.get()) is not None:
            loop, future, fn = item
            del item
            try:
                value, error = fn(), False
            except BaseException as e:  # the caller's exception, raised where it awaits
                value, error = e, True
            _reply(loop, future, value, error)
            del loop, future, fn, value  # nothing of a finished run lives until the next one

    def close(self) -> None:
        """Stop the threads once their runs end (a later `run` starts new ones)."""
        if self._queue is not None:
            for _ in range(self.n):
                self._queue.put(None)
            self._queue = None


_Run = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _reply(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, error: bool
) -> None:
    """Hand a run's outcome to the loop that waits for it (from an inference thread)."""

    def settle() -> None:
        if future.done():  # the waiting task was cancelled by asyncio itself
            return
        if error:
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(settle)


class _SchedAttr(ctypes.Structure):
    """Linux ``struct sched_attr`` (SCHED_ATTR_SIZE_VER1)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


# (sched_setattr, sched_getattr) syscall numbers
_SCHED_ATTR_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}
_SCHED_POLICIES_FAIR = (0, 3)  # SCHED_OTHER, SCHED_BATCH: the ones a slice applies to


_slice_warned = False


def thread_slice(slice_s: float | None = None) -> float | None:
    """The calling thread's scheduler slice (s), after setting it to ``slice_s`` when given
    (0: back to the kernel default). On Linux 6.12 and later (EEVDF custom slices) a thread
    with a short slice preempts a thread with a longer one as soon as it wakes; earlier
    kernels accept and ignore it. The policy and nice value are kept. None where the system
    refuses or has no ``sched_setattr`` (logged once)."""
    calls = _SCHED_ATTR_CALLS.get(platform.machine())
    try:
        if sys.platform != "linux" or calls is None:
            raise OSError(f"no sched_setattr on {sys.platform}/{platform.machine()}")
        libc = ctypes.CDLL(None, use_errno=True)
        tid = threading.get_native_id()
        attr = _SchedAttr()
        if libc.syscall(calls[1], tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        if slice_s is not None and attr.sched_policy in _SCHED_POLICIES_FAIR:
            attr.size = ctypes.sizeof(attr)
            attr.sched_flags = 0
            attr.sched_runtime = round(slice_s * 1e9)
            if libc.syscall(calls[0], tid, ctypes.byref(attr), 0) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            libc.syscall(calls[1], tid, ctypes.byref(attr), ctypes.sizeof(attr), 0)
        return float(attr.sched_runtime) / 1e9
    except OSError as e:
        global _slice_warned
        if not _slice_warned:
            _slice_warned = True
            log.warning("cannot set the event loop's scheduler slice (%s)", e)
        return None


class LoopLag:
    """How late the event loop runs what is due: a tick every ``interval_s``; `now` is the
    last tick's lateness, or how overdue the next one is when that is more (the loop is busy
    right now). A request's bytes wait about as long before the loop reads them."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.last_s = 0.0
        self._due = math.inf  # when the next tick should run (never, until started)

    def now(self) -> float:
        return max(self.last_s, time.monotonic() - self._due)

    async def run_forever(self) -> None:
        try:
            while True:
                self._due = time.monotonic() + self.interval_s
                await asyncio.sleep(self.interval_s)
                self.last_s = max(0.0, time.monotonic() - self._due)
                metrics.LOOP_LAG.observe(self.last_s)
        finally:
            self._due, self.last_s = math.inf, 0.0


class Overloaded(Exception):
    """The request was shed (``reason``: queue_full, deadline, outage_queue_full)."""

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class Shedder:
    """The inference slots and their bounded, deadline-aware queue (one per process)."""

    def __init__(
        self,
        concurrency: int,
        queue_max: int,
        deadline_s: float,
        retry_after_s: int = 1,
        inference_nice: int = 0,
        loop_lag_in_deadline: bool = False,
    ) -> None:
        self.concurrency = concurrency
        self.queue_max = queue_max
        self.deadline_s = deadline_s
        self.retry_after_s = retry_after_s
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.threads = InferenceThreads(concurrency, inference_nice)
        # Started by the app's lifespan (`LoopLag.run_forever`); reads 0 until then.
        self.loop_lag = LoopLag()
        self.loop_lag_in_deadline = loop_lag_in_deadline
        self.waiting = 0  # requests queued for a slot right now
        # Requests that passed the middleware's check and are still being read, parsed or
        # looked up in the cache: they will want a slot, so the next arrival counts them.
        self.reserved = 0
        self.mean_run_s = 0.0  # EWMA of the time a slot is held
        # EWMA of the time from the door to the queue (reading, parsing, the cache) of the
        # requests the middleware admitted: the door counts it before the wait for a slot.
        self.mean_pre_s = 0.0
        self._running: list[float] = []  # when each slot held now was taken

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (blocking: a model run) in an inference thread; call it holding a
        `slot`."""
        return await self.threads.run(fn)

    def shed(self, reason: str) -> Overloaded:
        metrics.SHED.labels(reason).inc()
        return Overloaded(reason, self.retry_after_s)

    def refusal(self, left_s: float, ahead: int = 0) -> str | None:
        """Why a request with ``left_s`` seconds to its deadline cannot get a slot in time
        (``queue_full``, ``deadline``), or None when it may have one or queue for one.

        ``ahead``: requests not queued yet that will want a slot before this one (the
        middleware passes `reserved`). A free slot is always taken, however little time is
        left: shedding is for a queue that is too long, not for time lost elsewhere (a slow
        Redis, a large body).
        """
        busy = self.limiter.borrowed_tokens >= self.concurrency
        queued = self.waiting + ahead
        if not busy and queued == 0:
            return None
        if queued >= self.queue_max:
            return "queue_full"
        if left_s <= 0 or self.expected_wait(queued) > left_s:
            return "deadline"
        return None

    def expected_wait(self, queued: int | None = None) -> float:
        """Seconds until a slot frees for a request behind ``queued`` others (default: those
        waiting now): what the running runs have left, plus a mean run for each request
        ahead, spread over the slots."""
        now = time.monotonic()
        running = sum(max(0.0, self.mean_run_s - (now - t)) for t in self._running)
        ahead = self.waiting if queued is None else queued
        return (running + ahead * self.mean_run_s) / self.concurrency

    def reserve(self, budget: Budget) -> None:
        """Count a request that passed the middleware as wanting a slot (until `release`)."""
        budget.reserved = True
        self.reserved += 1

    def release(self, budget: Budget) -> None:
        """Stop counting ``budget``'s reservation (it queues now, or the request ended)."""
        if budget.reserved:
            budget.reserved = False
            self.reserved -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one inference slot; raises `Overloaded` when a request cannot get one in
        time. Work outside a request, and an admitted request's later runs, wait as long as
        it takes (the latter count as queued)."""
        budget = _BUDGET.get()
        if budget is None or budget.admitted:
            queued = budget is not None
            self.waiting += queued
            try:
                await self.limiter.acquire()
            finally:
                self.waiting -= queued
        else:
            await self._admit(budget)
        t0 = time.monotonic()
        self._running.append(t0)
        try:
            yield
        finally:
            self._running.remove(t0)
            self.mean_run_s = _ewma(self.mean_run_s, time.monotonic() - t0)
            self.limiter.release()

    async def _admit(self, budget: Budget) -> None:
        """Take a slot for a request not admitted yet, or raise `Overloaded`.

        A request the door admitted (``budget.door``) is not checked again: it waits for its
        slot up to twice its deadline (``overrun`` past that). Any other request with a
        budget is checked here and waits up to its deadline (``deadline`` past that)."""
        self.release(budget)  # from here on it is counted as waiting (or running)
        now = time.monotonic()
        if budget.door:
            self.mean_pre_s = _ewma(self.mean_pre_s, now - budget.arrived)
            give_up_s, late = budget.deadline + self.deadline_s - now, "overrun"
        else:
            give_up_s, late = budget.deadline - now, "deadline"
            reason = self.refusal(give_up_s)
            if reason is not None:
                raise self.shed(reason)
        try:
            self.limiter.acquire_nowait()  # a free slot (and nobody waiting): taken at once
        except anyio.WouldBlock:
            acquired = False
            self.waiting += 1
            try:
                with anyio.move_on_after(give_up_s):
                    await self.limiter.acquire()
                    acquired = True
            finally:
                self.waiting -= 1
            if not acquired:
                raise self.shed(late) from None
        budget.admitted = True


class ShedMiddleware:
    """Starts each request's deadline and refuses, before parsing, a request that could not
    get a slot in time even now (queue full, or the runs ahead outlast the deadline).

    Only ``paths`` (the routes that run the model) are shed; health and metrics never are.
    """

    def __init__(self, app: ASGIApp, shedder: Shedder, paths: frozenset[str]) -> None:
        self.app = app
        self.shedder = shedder
        self.paths = paths
        # The refusals, encoded once per reason: two sends, no Response object per request.
        self._refusals: dict[str, tuple[Message, Message]] = {}
        for reason in ("queue_full", "deadline"):
            refused = overloaded_response(Overloaded(reason, shedder.retry_after_s))
            start = {"type": "http.response.start", "status": 503, "headers": refused.raw_headers}
            self._refusals[reason] = (start, {"type": "http.response.body", "body": refused.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        # Refusals happen here, before the body is read or parsed, routed or validated: that
        # keeps a shed answer near a millisecond when the process is busy. The requests that
        # passed this check and are still on their way to the queue count as ahead of this
        # one, so a burst is refused here rather than after parsing (in `Shedder.slot`).
        # A loop running late read these bytes late: they arrived about `lag` ago.
        # The decision is final: a request admitted here is not refused later unless it
        # waits twice its deadline, so it must be predicted to start in time, after the
        # reading and parsing still ahead of it (`Shedder.mean_pre_s`).
        shedder = self.shedder
        lag = shedder.loop_lag.now() if shedder.loop_lag_in_deadline else 0.0
        left = shedder.deadline_s - lag - shedder.mean_pre_s
        reason = shedder.refusal(left, ahead=shedder.reserved)
        if reason is not None:
            shedder.shed(reason)
            start, body = self._refusals[reason]
            await send(start)
            await send(body)
            return
        arrived = time.monotonic() - lag
        budget = Budget(arrived + shedder.deadline_s, arrived, door=True)
        shedder.reserve(budget)
        token = _BUDGET.set(budget)
        try:
            await self.app(scope, receive, send)
        finally:
            shedder.release(budget)
            _BUDGET.reset(token)


def _ewma(mean: float, x: float) -> float:
    """The exponentially weighted mean after ``x``; the first observation (``mean`` still 0)
    is taken whole, so a cold server's estimate is not a tenth of the truth for its first runs
    (it admits a burst's worth of requests on that estimate)."""
    return x if mean == 0.0 else mean + _EWMA_WEIGHT * (x - mean)


def overloaded_response(error: Overloaded) -> Response:
    return JSONResponse(
        {"detail": f"overloaded ({error.reason}); retry after {error.retry_after_s} s"},
        status_code=503,
        headers={"Retry-After": str(error.retry_after_s)},
    )


async def overloaded_handler(request: Request, error: Exception) -> Response:
    """FastAPI exception handler: `Overloaded` -> 503 with ``Retry-After``."""
    assert isinstance(error, Overloaded)
    return overloaded_response(error)
