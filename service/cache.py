"""Where user blobs live: Redis when configured, an in-process LRU otherwise or as fallback.

Keys are ``<prefix>:v<model version>:user:{<user id>}``. The version segment means a new
model writes to new keys (old ones expire by TTL, a rollback finds its keys again). The hash
tag ``{<user id>}`` makes Redis Cluster hash on the user id only: users spread evenly over
slots, and any further per-user key would land in the same slot as the blob. Every operation
here is a single-key command, except MGET for several users, which on a cluster client is
split per slot (``mget_nonatomic``).

Redis Cluster: a URL ``redis+cluster://host:port`` (or ``rediss+cluster://``) names one node
of a cluster; the client learns the others and the slot map from it (redis-py's asyncio
``RedisCluster``) and follows MOVED/ASK redirections, e.g. after a failover.

Failure model: any Redis error or timeout is logged, counted, and answered from the local
LRU (which mirrors every blob read or written); for ``retry_after_s`` afterwards Redis is not
tried at all, so an outage costs one timeout, not one per request. Callers learn from the
``degraded`` flag that the answer came from the fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError, WatchError

from service import metrics

log = logging.getLogger(__name__)

# (old blob or None) -> new blob, or None to leave the entry as it is.
Mutate = Callable[[bytes | None], Awaitable[bytes | None]]

_CAS_ATTEMPTS = 10  # optimistic WATCH/MULTI retries when another writer races us
# URL scheme of a Redis Cluster -> the scheme redis-py's RedisCluster.from_url expects.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What a store call may raise when Redis fails; cluster errors such as SlotNotCoveredError
# (during a failover) are not RedisErrors.
_STORE_ERRORS = (TimeoutError, RedisError, RedisClusterException, OSError)
# Compare-and-set of one key: SET key new EX ttl only if the key still holds the value whose
# SHA-1 is ARGV[1] ("" = the key is absent). Returns 1 when it wrote.
_CAS_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local ok = (cur == false and ARGV[1] == '') or (cur ~= false and redis.sha1hex(cur) == ARGV[1])
if ok then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Read:
    blobs: list[bytes | None]  # one per requested user, None = not cached
    degraded: bool  # True when Redis failed and the local fallback answered


@dataclass(frozen=True)
class Update:
    blob: bytes | None  # the new blob, None when ``mutate`` changed nothing
    degraded: bool


class LocalStore:
    """An LRU of blobs in this process, bounded in entries and in bytes, with per-key locks
    for read-modify-write.

    An entry costs ``entry_bytes(key, blob)``: the blob's and the key's ``sys.getsizeof`` plus
    the dict's node. The least recently used entries are evicted until both bounds hold.
    """

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self._size = size
        self.max_bytes = max_bytes
        self.nbytes = 0  # what the entries cost now
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        blob = self._items.get(key)
        if blob is not None:
            self._items.move_to_end(key)
        return blob

    def put(self, key: str, blob: bytes) -> None:
        old = self._items.get(key)
        if old is not None:
            self.nbytes -= entry_bytes(key, old)
        self._items[key] = blob
        self._items.move_to_end(key)
        self.nbytes += entry_bytes(key, blob)
        while len(self._items) > self._size or (
            self.max_bytes is not None and self.nbytes > self.max_bytes and self._items
        ):
            k, b = self._items.popitem(last=False)
            self.nbytes -= entry_bytes(k, b)
        metrics.LOCAL_CACHE_BYTES.set(self.nbytes)

    async def update(self, key: str, mutate: Mutate) -> bytes | None:
        # `mutate` awaits the model, so two events of one user could interleave without a lock.
        async with self._lock(key):
            new = await mutate(self.get(key))
            if new is not None:
                self.put(key, new)
            return new

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        # Reference-counted so the dict only holds keys that someone is using right now.
        entry = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self._locks[key]


_NODE_BYTES = 100  # an OrderedDict entry: hash slot, linked-list node, key and value pointers


def entry_bytes(key: str, blob: bytes) -> int:
    """What one LRU entry costs in memory (the blob, the key, the dict's node)."""
    return sys.getsizeof(blob) + sys.getsizeof(key) + _NODE_BYTES


class RedisStore:
    """Blob operations on one Redis server or a Redis Cluster, with a TTL on writes."""

    def __init__(self, client: aioredis.Redis | RedisCluster, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    @classmethod
    def from_url(cls, url: str, timeout_s: float, ttl_s: int) -> RedisStore:
        """A store on ``redis://`` (one server) or ``redis+cluster://`` (a Redis Cluster)."""
        # No client-side retries: a failed call falls back at once instead of multiplying the
        # latency budget (redis-py >= 6 retries 3 times with backoff by default).
        scheme, sep, rest = url.partition("://")
        if sep and scheme in CLUSTER_SCHEMES:
            cluster = RedisCluster.from_url(
                f"{CLUSTER_SCHEMES[scheme]}://{rest}",
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            return cls(cluster, ttl_s)
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(client, ttl_s)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # The client is built without decode_responses, so values are bytes.
        if len(keys) == 1:
            return [cast(bytes | None, await self.client.get(keys[0]))]
        if isinstance(self.client, RedisCluster):
            # Users hash to different slots: one MGET per slot, answers in the keys' order.
            return cast(list[bytes | None], await self.client.mget_nonatomic(keys))
        return cast(list[bytes | None], await self.client.mget(keys))

    async def put_if_absent(self, key: str, blob: bytes) -> bool:
        return bool(await self.client.set(key, blob, ex=self.ttl_s, nx=True))

    async def update(self, key: str, mutate: Mutate) -> bytes | None:
        """Read-modify-write of one key with WATCH/MULTI (a single-key transaction): a
        concurrent writer makes EXEC fail and the mutation re-run on its result. On a cluster,
        a single-key compare-and-set script instead (see `_update_cluster`)."""
        if isinstance(self.client, RedisCluster):
            return await self._update_cluster(self.client, key, mutate)
        for _ in range(_CAS_ATTEMPTS):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    new = await mutate(cast(bytes | None, await pipe.get(key)))
                    if new is None:
                        await pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, new, ex=self.ttl_s)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue
        raise RedisError(f"{key}: {_CAS_ATTEMPTS} concurrent writers in a row, giving up")

    async def _update_cluster(self, client: RedisCluster, key: str, mutate: Mutate) -> bytes | None:
        """GET, mutate, then SET only if the key still holds what was read (a Lua script on
        the key's slot, atomic like EXEC after WATCH); a concurrent writer makes it re-run.

        Not WATCH/MULTI: redis-py's asyncio cluster pipeline runs transactional commands with
        ``asyncio.run`` in a thread it joins, which blocks the server's event loop and shares
        connections across loops (under load: "attached to a different loop", hung requests).
        """
        for _ in range(_CAS_ATTEMPTS):
            old = cast(bytes | None, await client.get(key))
            new = await mutate(old)
            if new is None:
                return None
            expected = "" if old is None else hashlib.sha1(old).hexdigest()
            if await client.eval(_CAS_SCRIPT, 1, key, expected, new, self.ttl_s):
                return new
        raise RedisError(f"{key}: {_CAS_ATTEMPTS} concurrent writers in a row, giving up")

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()


def namespace(prefix: str, model_version: str) -> str:
    """The key namespace of one model's user states: ``<prefix>:v<model version>``.

    The one place that spells it: the app, the model swapper and the durability script
    (`deploy/aof_durability.py`) all call it, so they always agree on where a user lives.
    """
    return f"{prefix}:v{model_version}"


def user_key(namespace: str, user_id: int) -> str:
    """``<namespace>:user:{<user id>}``; the hash tag makes Redis Cluster hash the id only."""
    return f"{namespace}:user:{{{user_id}}}"


class UserCache:
    """The cache the service talks to: Redis with a local fallback, or the local LRU alone."""

    def __init__(
        self,
        local: LocalStore,
        redis: RedisStore | None,
        namespace: str,
        retry_after_s: float = 1.0,
    ) -> None:
        self.local = local
        self.redis = redis
        self.namespace = namespace  # "<prefix>:v<model version>"
        self.retry_after_s = retry_after_s
        self._skip_until = 0.0

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "local"

    def key(self, user_id: int) -> str:
        return user_key(self.namespace, user_id)

    def redis_available(self) -> bool:
        """Redis is configured and not inside the back-off window after an error."""
        return self.redis is not None and time.monotonic() >= self._skip_until

    async def get(self, user_ids: Sequence[int]) -> Read:
        keys = [self.key(u) for u in user_ids]
        if self.redis is not None and self._may_try():
            t0 = time.perf_counter()
            try:
                blobs = await self.redis.get_many(keys)
            except _STORE_ERRORS as e:
                self._failed("get", e)
            else:
                self._succeeded("get", t0)
                for k, b in zip(keys, blobs, strict=True):
                    if b is not None:
                        self.local.put(k, b)  # mirror, for the next outage
                return Read(blobs, degraded=False)
        return Read([self.local.get(k) for k in keys], degraded=self.redis is not None)

    async def put_if_absent(self, user_id: int, blob: bytes) -> bool:
        """Store a first blob for a user unless one appeared meanwhile; returns ``degraded``."""
        key = self.key(user_id)
        self.local.put(key, blob)
        if self.redis is None or not self._may_try():
            return self.redis is not None
        t0 = time.perf_counter()
        try:
            await self.redis.put_if_absent(key, blob)
        except _STORE_ERRORS as e:
            self._failed("put", e)
            return True
        self._succeeded("put", t0)
        return False

    async def update(self, user_id: int, mutate: Mutate) -> Update:
        """Atomically replace a user's blob with ``mutate(old)``."""
        key = self.key(user_id)
        if self.redis is not None and self._may_try():
            t0 = time.perf_counter()
            try:
                new = await self.redis.update(key, mutate)
            except _STORE_ERRORS as e:
                self._failed("update", e)
            else:
                self._succeeded("update", t0)
                if new is not None:
                    self.local.put(key, new)
                return Update(new, degraded=False)
        return Update(await self.local.update(key, mutate), degraded=self.redis is not None)

    async def ping(self) -> bool:
        """Whether Redis answers now (readiness); True without Redis (nothing to reach)."""
        if self.redis is None:
            return True
        try:
            ok = await self.redis.ping()
        except _STORE_ERRORS:
            ok = False
        metrics.REDIS_UP.set(int(ok))
        return ok

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()

    def _may_try(self) -> bool:
        if self.redis_available():
            return True
        metrics.FALLBACKS.labels("redis_skipped").inc()
        return False

    def _failed(self, op: str, error: BaseException) -> None:
        log.warning(
            "redis %s failed (%s: %s); serving from the local cache",
            op,
            type(error).__name__,
            error,
        )
        metrics.FALLBACKS.labels("redis_error").inc()
        metrics.REDIS_UP.set(0)
        self._skip_until = time.monotonic() + self.retry_after_s

    def _succeeded(self, op: str, t0: float) -> None:
        metrics.CACHE_DURATION.labels(op).observe(time.perf_counter() - t0)
        metrics.REDIS_UP.set(1)
