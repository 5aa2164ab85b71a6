"""The in-process LRU's byte bound (SEGINT_LOCAL_CACHE_MB)."""

from __future__ import annotations

import tracemalloc

from service.cache import LocalStore, entry_bytes


def test_the_lru_stays_under_its_byte_bound_and_evicts_the_least_recent() -> None:
    """Past the bound the least recently used entries go; the accounted bytes match the
    entries kept, and a replaced blob is accounted once."""
    blob = bytes(6000)
    cost = entry_bytes("u:{0}", blob)
    store = LocalStore(size=10**9, max_bytes=10 * cost + cost // 2)
    for i in range(10):
        store.put(f"u:{{{i}}}", blob)
    assert len(store) == 10
    store.get("u:{0}")  # now the most recent
    store.put("u:{10}", blob)
    assert len(store) == 10 and store.get("u:{1}") is None and store.get("u:{0}") is not None
    store.put("u:{10}", bytes(6000))  # replaced, not added
    assert store.nbytes == sum(entry_bytes(f"u:{{{i}}}", blob) for i in [0, *range(2, 11)])
    assert store.nbytes <= store.max_bytes  # type: ignore[operator]
    store.put("huge", bytes(100 * cost))  # larger than the bound: kept out entirely
    assert store.nbytes <= store.max_bytes and store.get("huge") is None  # type: ignore[operator]


def test_entry_bytes_accounts_for_what_python_allocates() -> None:
    """The bound is of real memory: for 20,000 entries of 6 KB blobs (the base model's blob
    size), what tracemalloc sees allocated (blobs, keys, the dict) is at most the accounted
    bytes and within 5% of them."""
    store = LocalStore(size=10**9)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(20_000):
        store.put(f"segint:vbench:user:{{{i}}}", bytes([i % 256]) * 6000)
    allocated = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert 0.95 * store.nbytes <= allocated <= store.nbytes, (allocated, store.nbytes)
