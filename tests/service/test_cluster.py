"""The user cache and the service on a real six-node Redis Cluster (3 masters, 3 replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.cache import LocalStore, RedisStore, UserCache
from service.settings import Settings
from tests.service.cluster import LocalCluster, local_cluster
from tests.service.reference import score_body
from tests.service.test_cache import append


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def masters_of(cluster: LocalCluster, keys: list[str]) -> set[int]:
    """Ports of the masters that hold ``keys`` (from the cluster's own slot map)."""
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        return {int(client.get_node_from_key(k).port) for k in keys}
    finally:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cluster_store_reads_many_users_across_slots_and_updates_atomically(
    cluster: LocalCluster,
) -> None:
    """A cluster URL gives a RedisCluster client; an MGET of 60 users spread over all three
    masters answers in order (one MGET per slot); WATCH/MULTI on one key loses no concurrent
    write."""
    store = RedisStore.from_url(cluster.url, timeout_s=1.0, ttl_s=60)
    assert store.cluster
    cache = UserCache(LocalStore(10), store, namespace="segint-test:vcluster")
    try:
        users = list(range(1000, 1060))
        assert len(masters_of(cluster, [cache.key(u) for u in users])) == 3
        for u in users[::2]:
            assert await cache.put_if_absent(u, str(u).encode()) is False  # not degraded
        read = await cache.get(users)
        assert not read.degraded
        assert read.blobs == [str(u).encode() if u % 2 == 0 else None for u in users]

        results = await asyncio.gather(
            *(cache.update(7, append(str(i).encode())) for i in range(5))
        )
        assert not any(r.degraded for r in results)
        (blob,) = (await cache.get([7])).blobs
        assert blob is not None and sorted(blob.split(b",")) == [b"0", b"1", b"2", b"3", b"4"]
        assert await cache.redis.ping() if cache.redis else False
        # The blobs carry the TTL on the cluster too.
        node = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        assert 0 < node.ttl(cache.key(7)) <= 60
        node.delete(*[cache.key(u) for u in [*users, 7]])
        node.close()
    finally:
        await cache.close()


def test_service_keeps_user_histories_in_the_cluster(
    cluster: LocalCluster, make_settings: Callable[..., Settings], self_artifact: Path
) -> None:
    """With SEGINT_REDIS_URL=redis+cluster://..., view events of users on every master land in
    the cluster, /score reads their histories back, and nothing is degraded."""
    settings = make_settings(redis_url=cluster.url, key_prefix="segint-test-cluster")
    users = list(range(2000, 2012))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        for u in users:
            for i in range(u % 3 + 1):
                body = {
                    "user_id": u,
                    "video_id": 3 + i,
                    "duration_ms": 12_000,
                    "play_time_ms": 4_000,
                    "time_ms": 1_714_000_000_000 + i,
                }
                r = client.post("/events/view", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["cache_degraded"] is False
        for u in users:
            r = client.post("/score", json=score_body(u, [(3, 12_000), (4, 7_000)]))
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["history_source"] == "cache" and not out["cache_degraded"]
            assert out["history_length"] == u % 3 + 1
    node = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        keys = [k.decode() for k in node.scan_iter(match="segint-test-cluster:*", count=1000)]
        assert len(keys) == len(users)
        assert len(masters_of(cluster, keys)) == 3
        node.delete(*keys)
    finally:
        node.close()
