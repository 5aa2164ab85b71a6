"""The user cache: key layout, LRU, read-modify-write, and degradation when Redis fails."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from service.cache import LocalStore, RedisStore, UserCache, namespace, user_key
from tests.paths import ROOT

pytestmark = pytest.mark.anyio


def append(value: bytes):  # type: ignore[no-untyped-def]
    """A mutation that appends ``value`` to a comma list, yielding to the loop midway."""

    async def mutate(old: bytes | None) -> bytes | None:
        await asyncio.sleep(0.001)  # like awaiting the model: lets a second writer interleave
        return value if old is None else old + b"," + value

    return mutate


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("segint_fallback_total", {"reason": reason}) or 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def fake_cache() -> AsyncIterator[UserCache]:
    store = RedisStore(fakeredis.FakeAsyncRedis(), ttl_s=60)
    cache = UserCache(LocalStore(100), store, namespace="segint:vtest")
    yield cache
    await cache.close()


def test_keys_are_versioned_and_hash_tagged_by_user() -> None:
    """`<prefix>:v<version>:user:{<id>}`: Redis Cluster hashes on the user id only."""
    cache = UserCache(LocalStore(1), None, namespace=namespace("segint", "2025-01"))
    assert cache.key(42) == "segint:v2025-01:user:{42}" == user_key(cache.namespace, 42)


def test_app_and_durability_script_share_the_key_namespace_helper() -> None:
    """The app, the model swapper and deploy/aof_durability.py build keys with
    service.cache.namespace / user_key only: none spells the key format itself."""
    import ast

    for path in ("service/app.py", "service/swap.py", "deploy/aof_durability.py"):
        source = (ROOT / path).read_text()
        assert ":v{" not in source and ":user:" not in source, path
        names = {
            alias.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module == "service.cache"
            for alias in node.names
        }
        assert "namespace" in names, path


def test_local_store_evicts_least_recently_used() -> None:
    store = LocalStore(2)
    store.put("a", b"1")
    store.put("b", b"2")
    assert store.get("a") == b"1"  # "a" is now the most recent
    store.put("c", b"3")
    assert store.get("b") is None and store.get("a") == b"1" and len(store) == 2


async def test_local_updates_of_one_user_do_not_lose_writes() -> None:
    """Concurrent read-modify-writes of one key are serialized (per-key lock)."""
    cache = UserCache(LocalStore(10), None, namespace="t")
    await asyncio.gather(*(cache.update(1, append(str(i).encode())) for i in range(5)))
    (blob,) = (await cache.get([1])).blobs
    assert blob is not None and sorted(blob.split(b",")) == [b"0", b"1", b"2", b"3", b"4"]
    assert not cache.local._locks, "locks must not pile up"


async def test_redis_get_put_update_with_ttl(fake_cache: UserCache) -> None:
    """Miss, first write (NX: never clobbers), update, MGET over users; writes carry the TTL."""
    assert (await fake_cache.get([1, 2])).blobs == [None, None]
    assert await fake_cache.put_if_absent(1, b"a") is False  # not degraded
    await fake_cache.put_if_absent(1, b"other")  # a second first-write loses
    upd = await fake_cache.update(2, append(b"x"))
    assert upd.blob == b"x" and not upd.degraded
    read = await fake_cache.get([1, 2, 3])
    assert read.blobs == [b"a", b"x", None] and not read.degraded
    assert fake_cache.redis is not None
    ttl = await fake_cache.redis.client.ttl(fake_cache.key(1))
    assert 0 < ttl <= 60


async def test_real_redis_cas_keeps_concurrent_writers(redis_url: str) -> None:
    """Two replicas updating one user at once: WATCH/MULTI retries, no update is lost."""
    ns = f"segint-test-{uuid.uuid4().hex}:vcas"
    replicas = [
        UserCache(
            LocalStore(10), RedisStore(aioredis.Redis.from_url(redis_url), ttl_s=60), namespace=ns
        )
        for _ in range(2)
    ]
    try:
        await asyncio.gather(
            *(r.update(7, append(str(i).encode())) for i, r in enumerate(replicas * 3))
        )
        (blob,) = (await replicas[0].get([7])).blobs
        assert blob is not None and sorted(blob.split(b",")) == [b"0", b"1", b"2", b"3", b"4", b"5"]
    finally:
        assert replicas[0].redis is not None
        await replicas[0].redis.client.delete(replicas[0].key(7))
        for r in replicas:
            await r.close()


async def test_redis_down_falls_back_to_local_and_backs_off() -> None:
    """Connection refused: answered from the local mirror, flagged degraded, then Redis is
    not retried inside the back-off window (one failure, not one per request)."""
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2, ttl_s=60)
    cache = UserCache(LocalStore(10), store, namespace="t", retry_after_s=60)
    errors = fallbacks("redis_error")
    skipped = fallbacks("redis_skipped")
    try:
        read = await cache.get([1])
        assert read.degraded and read.blobs == [None]
        upd = await cache.update(1, append(b"v"))
        assert upd.degraded and upd.blob == b"v"
        assert (await cache.get([1])).blobs == [b"v"]  # the local fallback kept the write
        assert fallbacks("redis_error") == errors + 1
        assert fallbacks("redis_skipped") == skipped + 2
        assert not cache.redis_available() and await cache.ping() is False
    finally:
        await cache.close()
