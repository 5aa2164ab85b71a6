"""`bench.pacer.Pacer`: the open-loop generators' send times (order, never early, stops)."""

from __future__ import annotations

import asyncio
import time

from bench.pacer import Pacer


def test_each_request_is_released_in_order_and_never_before_its_time() -> None:
    async def run() -> list[tuple[int, float, float]]:
        loop = asyncio.get_running_loop()
        start, rate, n = loop.time() + 0.05, 200.0, 40
        released: list[tuple[int, float, float]] = []  # (i, due, released)
        async with Pacer(start, rate, n) as pacer:

            async def one(i: int) -> None:
                await pacer.due(i)
                released.append((i, pacer.time_of(i), loop.time()))

            await asyncio.gather(*(one(i) for i in reversed(range(n))))
        return released

    released = asyncio.run(run())
    assert [i for i, _, _ in released] == list(range(40))
    assert all(at >= due for _, due, at in released)


def test_a_stopped_pacer_ends_its_thread_without_releasing_the_rest() -> None:
    async def run() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(loop.time(), 1.0, 3)  # due at 0, 1 and 2 s
        t0 = time.monotonic()
        async with pacer:
            await pacer.due(0)
        # the context's exit stopped and joined the thread well before the last due time
        assert time.monotonic() - t0 < 1.0
        return pacer._due[0].done(), pacer._due[2].done()

    assert asyncio.run(run()) == (True, False)
