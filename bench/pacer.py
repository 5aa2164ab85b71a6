"""Send times for the open-loop generators, kept to about a tenth of a millisecond (bench only).

An open-loop latency counts from the request's scheduled time, so the generator's own delay in
sending is part of every latency it reports. ``await asyncio.sleep(due - now)`` wakes through
epoll, whose timeout is whole milliseconds rounded up: on this project's 2-core machine a
request went out 0.7 ms late on the median and 1.5-1.7 ms at the 99th percentile (round 14,
`docs/serving.md`), about a seventh of a 100-candidate request's measured latency.

`Pacer` moves the waiting to a thread: ``time.sleep`` to ``SPIN_S`` before each due time, then
``time.sleep(0)`` (a yield) until it, then ``loop.call_soon_threadsafe`` wakes the loop through
its self-pipe. Measured in round 14: sent 0.11-0.2 ms late on the median and 0.3-0.6 ms at the
99th percentile, most of it the loop's own wake-up. The requests still start on the event loop,
and one that is due while the loop is busy (reading another answer) starts when the loop gets
to it: that delay stays in the latency, as it should.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

SPIN_S = 3e-4  # the last stretch before a due time is yielded away, not slept


class Pacer:
    """Due times ``start + i / rate`` for ``i < n`` on the loop's clock (``time.monotonic``):
    ``await pacer.due(i)`` returns at request ``i``'s time. Use as ``async with``."""

    def __init__(self, start: float, rate: float, n: int) -> None:
        self.start, self.rate, self.n = start, rate, n
        self._loop = asyncio.get_running_loop()
        self._due = [self._loop.create_future() for _ in range(n)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pacer", daemon=True)

    def time_of(self, i: int) -> float:
        return self.start + i / self.rate

    async def due(self, i: int) -> None:
        await self._due[i]

    async def __aenter__(self) -> Pacer:
        self._thread.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        for i, fut in enumerate(self._due):
            due = self.time_of(i)
            # Sleep to SPIN_S before the due time, in slices of at most 50 ms so that a
            # stopped pacer ends promptly; then yield the CPU until it (time.sleep oversleeps
            # by ~0.1 ms in this VM: timer slack and the hypervisor's timer).
            while (delay := due - time.monotonic() - SPIN_S) > 0 and not self._stop.is_set():
                time.sleep(min(delay, 0.05))
            while time.monotonic() < due and not self._stop.is_set():
                time.sleep(0)  # releases the GIL: the loop's thread is not held up
            if self._stop.is_set():
                return
            try:
                self._loop.call_soon_threadsafe(_release, fut)
            except RuntimeError:  # the loop closed under us
                return


def _release(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
