"""The outage journal: its file format and locking, and the kill -9 drill over real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from service.cache import LocalStore, RedisStore, UserCache
from service.history import decode_blob
from service.journal import Journal, JournalError, encode
from service.ranker import Ranker
from service.shedding import Overloaded, Shedder
from service.users import UserStates, View
from tests.service.live import free_port, redis_process, uvicorn_server


def test_journal_reads_back_what_was_appended_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    """Appended events come back in order after a reopen; half a record at the end (a crash
    mid-write) is cut off, the whole ones kept."""
    path = tmp_path / "j" / "journal.bin"
    entries = [(1, 10, 5000, 100, 7), (2, 2**63 - 1, 1, 0, 2**53), (1, 11, 9000, 9000, 8)]

    async def write() -> int:
        journal = Journal.open(path)
        await asyncio.gather(*(journal.append(e) for e in entries))  # one group
        fsyncs = journal.fsyncs
        journal.close()
        return fsyncs

    assert asyncio.run(write()) == 1
    with path.open("ab") as f:
        f.write(encode((3, 3, 3, 3, 3))[:20])
    journal = Journal.open(path)
    assert journal.recovered == entries
    assert path.stat().st_size == 3 * len(encode(entries[0]))
    journal.close()


def test_journal_refuses_a_second_process_and_truncates_only_when_nothing_is_pending(
    tmp_path: Path,
) -> None:
    """One writer at a time (flock); truncate_if empties the file only when told nothing is
    pending."""
    path = tmp_path / "journal.bin"
    journal = Journal.open(path)
    with pytest.raises(JournalError, match="in use"):
        Journal.open(path)

    async def run() -> tuple[bool, bool]:
        await journal.append((1, 2, 3, 4, 5))
        kept = await journal.truncate_if(lambda: False)
        size_kept = path.stat().st_size
        emptied = await journal.truncate_if(lambda: True)
        assert size_kept > 0
        return kept, emptied

    assert asyncio.run(run()) == (False, True)
    assert path.stat().st_size == 0
    journal.close()


def _view(user_id: int, video_id: int, time_ms: int) -> dict[str, int]:
    return {
        "user_id": user_id,
        "video_id": video_id,
        "duration_ms": 12000,
        "play_time_ms": 4000,
        "time_ms": time_ms,
    }


@pytest.mark.slow
def test_kill_9_during_a_redis_outage_loses_no_acknowledged_event(
    self_artifact: Path, tmp_path: Path
) -> None:
    """Redis down -> view events (acknowledged, degraded) -> service kill -9 -> service start
    -> Redis up: every acknowledged event is in its user's history, and the journal is
    emptied."""
    port = free_port()
    journal = tmp_path / "outage.journal"
    env = {
        "SEGINT_ARTIFACT_DIR": str(self_artifact),
        "SEGINT_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SEGINT_REDIS_TIMEOUT_S": "0.1",
        "SEGINT_REDIS_RETRY_AFTER_S": "0.3",
        "SEGINT_JOURNAL_PATH": str(journal),
    }
    # 12 users x 4 views (the tiny model keeps 5), sent by 4 threads at once.
    events = [_view(500 + u, 1000 + v, 1000 * v) for u in range(12) for v in range(4)]
    acked: list[dict[str, int]] = []
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with redis_process(port) as rp, uvicorn_server(env, tmp_path / "first") as first:
        rp.proc.kill()  # Redis gone mid-life: connection refused from now on
        rp.proc.wait()
        with httpx.Client(timeout=10) as http, ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda e: http.post(f"{first.url}/events/view", json=e), events)
            )
        for event, r in zip(events, answers, strict=True):
            assert r.status_code == 200, r.text
            assert r.json()["cache_degraded"] is True
            acked.append(event)
        os.kill(first.pid, signal.SIGKILL)  # no shutdown hook runs
    assert len(acked) == len(events) and journal.stat().st_size > 0
    with uvicorn_server(env, tmp_path / "second") as second:
        # What the start recovered from the journal, from its log line: the
        # segint_pending_events gauge dips while a replay attempt holds a user's views.
        recovered = f"{len(events)} view events from the outage journal wait for Redis"
        assert recovered in second.log_text(), second.log_text()
        with redis_process(port) as rp:
            client = redis.Redis.from_url(rp.url)
            want = {
                u: sorted(e["video_id"] for e in acked if e["user_id"] == u)
                for u in {e["user_id"] for e in acked}
            }
            deadline = time.monotonic() + 30
            while True:
                got = {}
                for u in want:
                    blob = client.get(f"segint:vtiny-self:user:{{{u}}}")
                    got[u] = (
                        None if blob is None else sorted(decode_blob(blob, None).history.video_ids)
                    )
                if got == want and journal.stat().st_size == 0:
                    break
                assert time.monotonic() < deadline, (got, want, journal.stat().st_size)
                time.sleep(0.2)
            client.close()
    assert "Traceback" not in second.log_text(), second.log_text()


@pytest.mark.anyio
async def test_an_event_the_journal_cannot_hold_is_refused_not_acknowledged(
    self_artifact: Path, tmp_path: Path
) -> None:
    """Redis unreachable and the journal write failing: the view event raises Overloaded
    (a 503 over HTTP, so the client retries) and stays pending for the replay."""
    ranker = Ranker.load(self_artifact, intra_op_threads=1)
    redis_store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", 0.1, 60)
    cache = UserCache(LocalStore(100), redis_store, namespace="t")
    journal = Journal.open(tmp_path / "journal.bin")
    os.close(journal._fd)  # every write now fails (EBADF)
    users = UserStates(ranker, cache, journal=journal)
    try:
        with pytest.raises(Overloaded, match="journal_error"):
            await users.record_view(1, View(2, 9000, 100, 5))
        assert [v.video_id for v in users.pending[1]] == [2]
    finally:
        await cache.close()


class _NoScan(dict[int, list[View]]):
    """A dict whose every scan fails: per-event work must not walk all users."""

    def values(self):  # type: ignore[no-untyped-def, override]
        raise AssertionError("scanned every user's pending views")

    def items(self):  # type: ignore[no-untyped-def, override]
        raise AssertionError("scanned every user's pending views")

    def __iter__(self):  # type: ignore[no-untyped-def, override]
        raise AssertionError("scanned every user's pending views")


def test_pending_views_count_is_kept_without_scanning_users() -> None:
    """Queueing, bounding and popping pending views never walks the other users' lists (O(1)
    per event), and the running count equals the views held after any sequence of them."""
    from service.users import PendingViews

    pending = PendingViews()
    pending._views = _NoScan()
    users = UserStates.__new__(UserStates)
    users.pending, users.pending_max = pending, 5
    users.shedder = Shedder(1, queue_max=1, deadline_s=1.0)
    for i in range(5):
        users._keep_for_replay(i % 3, View(i, 9000, 100, i))
    assert pending.count == 5 and len(pending) == 3
    with pytest.raises(Overloaded, match="outage_queue_full"):
        users._keep_for_replay(9, View(9, 9000, 100, 9))
    assert [v.video_id for v in pending[0]] == [0, 3]
    popped = pending.pop(0)
    pending.add(0, popped[1:])
    assert pending.count == 4
    pending.add(7, [])
    assert len(pending) == 3  # an empty add leaves no empty list behind
    assert pending.count == sum(len(dict.__getitem__(pending._views, u)) for u in (0, 1, 2))
