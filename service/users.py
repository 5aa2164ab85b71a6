"""User states for requests: read from the cache, computed once on a miss, updated by views.

This is the glue between the `UserCache` (bytes per user) and the `Ranker` (numpy in, numpy
out), running the model in worker threads behind a capacity limiter so the event loop never
blocks and the cores are not oversubscribed. Nothing here knows about HTTP.

The user side is computed once per user, on the first request that misses the cache or on a
view event, never per candidate. View events applied while Redis is down are kept in memory
and replayed into Redis once it answers again; replay is harmless because applying a view is
idempotent on (user, video, time).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from service import metrics
from service.cache import UserCache
from service.history import BlobError, History, UserState, decode_blob, encode_blob
from service.journal import Entry, Journal
from service.ranker import Ranker, Timings
from service.shedding import Shedder

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
HistorySource = Literal["cache", "request", "empty"]


@dataclass(frozen=True)
class View:
    """One view event (raw ids)."""

    video_id: int
    duration_ms: int
    play_time_ms: int
    time_ms: int


class PendingViews:
    """View events applied locally during an outage, per user, waiting for Redis.

    Keeps a running count beside the per-user lists, so checking the bound and updating the
    gauge is O(1) per event (summing the lists was O(users) per event: slow exactly when an
    outage has piled up many users). One instance is shared by every model's `UserStates`.
    """

    def __init__(self) -> None:
        self._views: dict[int, list[View]] = {}
        self.count = 0  # events held, over all users

    def __len__(self) -> int:  # users with events pending
        return len(self._views)

    def __bool__(self) -> bool:
        return bool(self._views)

    def __getitem__(self, user_id: int) -> list[View]:
        return self._views[user_id]

    def users(self) -> list[int]:
        return list(self._views)

    def add(self, user_id: int, views: list[View]) -> None:
        """Queue ``views`` behind the user's pending ones (in order)."""
        if views:
            self._views.setdefault(user_id, []).extend(views)
            self.count += len(views)
            metrics.PENDING_EVENTS.set(self.count)

    def pop(self, user_id: int) -> list[View]:
        views = self._views.pop(user_id)
        self.count -= len(views)
        metrics.PENDING_EVENTS.set(self.count)
        return views


@dataclass(frozen=True)
class Resolved:
    state: UserState
    source: HistorySource  # where the history came from
    degraded: bool  # Redis failed; the fallback answered


@dataclass(frozen=True)
class Recorded:
    applied: bool  # False when the view was already in the history (a replay)
    history_length: int
    degraded: bool


class UserStates:
    """Resolves and updates user states; one instance per loaded model, created in the lifespan
    (and by a model swap, which shares the slots, pending events and journal: `for_model`).

    ``journal``: where view events acknowledged during an outage are made durable (see
    `service.journal`); None keeps them in memory only. ``shedder``: the inference slots and
    their bounded queue (default: ``concurrency`` slots, never shed).
    """

    def __init__(
        self,
        ranker: Ranker,
        cache: UserCache,
        concurrency: int = 1,
        pending_max: int = 100_000,
        journal: Journal | None = None,
        shedder: Shedder | None = None,
    ) -> None:
        self.ranker = ranker
        self.cache = cache
        self.shedder = shedder or Shedder(concurrency, queue_max=2**31, deadline_s=math.inf)
        self.pending = PendingViews()
        self.pending_max = pending_max
        self.journal = journal
        self._history_len = ranker.history_cap

    def for_model(self, ranker: Ranker, cache: UserCache) -> UserStates:
        """The same slots, pending events and journal, serving another model."""
        other = copy.copy(self)
        other.ranker, other.cache, other._history_len = ranker, cache, ranker.history_cap
        return other

    def restore(self, entries: Iterable[Entry]) -> int:
        """Queue journaled events (read back at start) for replay; returns how many."""
        n = 0
        for user_id, video_id, duration_ms, play_time_ms, time_ms in entries:
            self.pending.add(user_id, [View(video_id, duration_ms, play_time_ms, time_ms)])
            n += 1
        return n

    async def infer(
        self, timings: Timings, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn`` (a blocking ranker call) in an inference thread, one of ``concurrency``
        (`Shedder.run`: threads at a lower priority than the event loop).

        Raises:
            Overloaded: inside a request, when no slot is free in time (load shedding).
        """
        t0 = time.perf_counter()
        async with self.shedder.slot():
            waited = time.perf_counter() - t0
            timings.queue_s += waited
            metrics.INFERENCE_QUEUE_WAIT.observe(waited)
            marks = [0.0, 0.0]  # the call's start and end, in the inference thread

            def call() -> T:
                marks[0] = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    marks[1] = time.perf_counter()

            submitted = time.perf_counter()
            result = await self.shedder.run(call)
            timings.handoff_s += (marks[0] - submitted) + (time.perf_counter() - marks[1])
            return result

    async def resolve(self, user_id: int, history: History | None, timings: Timings) -> Resolved:
        """The user's state: cached, else computed once (from the request's history, or an
        empty one) and cached. An unusable cached blob is recomputed and replaced; a stale one
        (another export of this version) keeps its history."""
        t0 = time.perf_counter()
        read = await self.cache.get([user_id])
        timings.cache_s += time.perf_counter() - t0
        blob = read.blobs[0]
        source: HistorySource = "request" if history else "empty"
        if blob is not None:
            try:
                state = decode_blob(blob, self.ranker.fingerprint)
            except BlobError as e:
                metrics.FALLBACKS.labels(f"{e.reason}_blob").inc()
                log.warning("user %s: unusable cached blob (%s); recomputing", user_id, e)
                if e.reason == "stale":  # the views are still this user's views
                    with contextlib.suppress(BlobError):
                        history, source = decode_blob(blob, None).history, "cache"
            else:
                metrics.CACHE_REQUESTS.labels("hit").inc()
                return Resolved(state, "cache", read.degraded)
        metrics.CACHE_REQUESTS.labels("error" if read.degraded else "miss").inc()
        state = await self.infer(
            timings, self.ranker.encode_user, user_id, history or History.empty(), timings
        )
        new = encode_blob(state, self.ranker.fingerprint)
        t0 = time.perf_counter()
        if blob is None:  # first write wins: never clobber a blob a view event wrote meanwhile
            degraded = await self.cache.put_if_absent(user_id, new)
        else:

            async def replace(current: bytes | None) -> bytes | None:
                return new if current in (None, blob) else None

            degraded = (await self.cache.update(user_id, replace)).degraded
        timings.cache_s += time.perf_counter() - t0
        return Resolved(state, source, read.degraded or degraded)

    async def record_view(self, user_id: int, view: View, durable: bool = True) -> Recorded:
        """Add a view to the user's cached history and recompute the user side.

        When Redis failed, the view is kept for replay and, with a journal and ``durable``
        (False for the replay itself, whose events are journaled already), written to the
        journal before this returns.

        Raises:
            Overloaded: the pending events are full, or the journal write failed (nothing is
                acknowledged then: the caller answers 503 and the client retries).
        """
        length = -1

        async def mutate(old: bytes | None) -> bytes | None:
            nonlocal length
            current = self._history_of(user_id, old)
            new = current.with_view(
                view.video_id, view.duration_ms, view.play_time_ms, view.time_ms, self._history_len
            )
            length = len(current if new is None else new)
            if new is None:
                return None
            state = await self.infer(Timings(), self.ranker.encode_user, user_id, new)
            return encode_blob(state, self.ranker.fingerprint)

        result = await self.cache.update(user_id, mutate)
        if result.degraded:
            self._keep_for_replay(user_id, view)
            if durable and self.journal is not None:
                # Pending before journaled: a truncate never drops an event not in Redis yet.
                entry = (user_id, view.video_id, view.duration_ms, view.play_time_ms, view.time_ms)
                try:
                    await self.journal.append(entry)
                except OSError as e:  # not durable: not acknowledged (the client retries)
                    log.error("outage journal write failed (%s); refusing the view event", e)
                    raise self.shedder.shed("journal_error") from e
                metrics.JOURNAL_APPENDS.inc()
        return Recorded(result.blob is not None, length, result.degraded)

    async def replay_pending(self) -> int:
        """Apply the views kept during an outage to Redis; returns how many were replayed.
        A user whose replay fails again stays pending (with the views not yet applied)."""
        done = 0
        for user_id in self.pending.users():
            if not self.cache.redis_available():
                break
            views = self.pending.pop(user_id)
            for i, view in enumerate(views):
                try:
                    recorded = await self.record_view(user_id, view, durable=False)
                except Exception:
                    self.pending.add(user_id, views[i:])  # retried next time
                    raise
                if recorded.degraded:
                    # record_view re-queued this view; keep the rest behind it, in order.
                    self.pending.add(user_id, views[i + 1 :])
                    break
                done += 1
        if done:
            log.info("replayed %d view events into Redis", done)
        if self.journal is not None and not self.pending:
            await self.journal.truncate_if(lambda: not self.pending)
        return done

    async def replay_forever(
        self, interval_s: float, current: Callable[[], UserStates] | None = None
    ) -> None:
        """Background task of the lifespan: replay pending views every ``interval_s`` with
        ``current()`` (the model serving now; default: this one)."""
        while True:
            await asyncio.sleep(interval_s)
            users = current() if current is not None else self
            if not (users.pending and users.cache.redis_available()):
                continue
            try:
                await users.replay_pending()
            except Exception:  # keep the task alive; the views stay pending
                log.exception("replaying pending view events failed")

    def _history_of(self, user_id: int, blob: bytes | None) -> History:
        if blob is None:
            return History.empty()
        try:
            return decode_blob(blob, self.ranker.fingerprint).history
        except BlobError as e:
            # A stale blob's history is still the user's history (ids, not states); a corrupt
            # one cannot be trusted at all.
            metrics.FALLBACKS.labels(f"{e.reason}_blob").inc()
            if e.reason == "stale":
                with contextlib.suppress(BlobError):
                    return decode_blob(blob, fingerprint=None).history
            log.warning("user %s: corrupt cached blob replaced (%s)", user_id, e)
            return History.empty()

    def _keep_for_replay(self, user_id: int, view: View) -> None:
        queued = self.pending.count
        if queued >= self.pending_max:
            # Refused, not dropped: the caller gets a 503 and retries (applying is idempotent).
            metrics.FALLBACKS.labels("event_dropped").inc()
            log.error("pending view events full (%d); refusing one for user %s", queued, user_id)
            raise self.shedder.shed("outage_queue_full")
        self.pending.add(user_id, [view])
