"""Local copies of hot Redis reads, dropped the moment Redis reports a change (Redis client-side caching).

One connection per instance subscribes to ``__redis__:invalidate`` and turns on broadcast tracking (``CLIENT
TRACKING ON REDIRECT <itself> BCAST PREFIX jl:{``), so Redis announces on it every change to a space's keys,
whoever made it and however (commands, scripts, expiry, FLUSHDB). A read is served from memory only while that
connection is known to be alive; the rules that keep a copy from outliving its data:

- an entry names the Redis keys it was built from; a change to any of them drops it;
- a read that was in flight while one of its keys changed is returned but not kept (it may predate the change);
- while the listener is not subscribed nothing is kept or served, and losing it drops everything, since Redis
  may have announced changes nobody heard; a listener that stops answering its pings counts as lost;
- a write made through this instance also drops its keys locally, so a client reads its own writes at once;
  writes through other instances are seen as soon as their announcement arrives (well under a millisecond on
  a healthy network);
- entries also expire after ``max_age_s``, a backstop rather than the mechanism.

On a Redis Cluster the listener is one such connection per node — primaries *and* replicas, as ``CLUSTER NODES``
lists them (less the nodes the cluster agreed are failed). A replica announces the changes it replicates, so the
node a failover promotes has been listened to all along, and no change falls between the old primary's listener
and the new one's. The set of nodes is checked every `PING_INTERVAL_S`; when it changes (a failover, a node added
or back) every connection is made afresh, dark in between. A read is kept only if the node the client sends its
key to is one of those listened to (a node added since the last check is not). Losing any connection drops
everything, as with one server.

Cost: every change to a space's keys (appends, transitions, rate-limit leases included) sends each instance one
short message (two on a cluster: the primary's and its replica's), a few microseconds of work each.

Keys owned: none (the connections only listen).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, ResponseError

from service.stores.keyspace import RedisClient

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACKED_PREFIX = "jl:{"  # every key of every space (see `keyspace.SpaceKeys`)
INVALIDATE_CHANNEL = "__redis__:invalidate"
LISTENER_NAME = "joblens-invalidations"
PING_INTERVAL_S = 1.0
SILENCE_LIMIT_S = 3.0  # a listener silent this long (pings unanswered) is treated as lost
RECONNECT_DELAY_S = (0.1, 2.0)
# Nodes a cluster has agreed are gone (or not yet usable): nobody reads from or writes to them.
UNUSABLE_NODE_FLAGS = frozenset({"fail", "noaddr", "handshake"})
STANDALONE = "redis"  # the name of the one listened-to server of a standalone Redis

ConnectionFactory = Callable[[], AbstractConnection]


class TopologyChanged(Exception):
    """The cluster's nodes are not the ones listened to any more."""


@dataclass(slots=True)
class _Entry:
    value: Any
    redis_keys: tuple[str, ...]
    stored_at: float


@dataclass(slots=True, eq=False)
class _Load:
    redis_keys: tuple[str, ...]
    still_valid: bool = True


@dataclass(slots=True)
class CacheCounts:
    hits: int = 0
    misses: int = 0
    resets: int = 0
    invalidations: int = 0


class ReadCache:
    def __init__(self, redis: RedisClient, max_entries: int, max_age_s: float = 10.0) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._entries: dict[str, _Entry] = {}
        self._dependents: dict[str, set[str]] = {}  # Redis key → cache keys built from it
        self._loading: dict[str, list[_Load]] = {}  # Redis key → reads in flight that touch it
        self._live = False
        self._listened: frozenset[str] = frozenset()  # the nodes whose connections are subscribed
        self._reconnect_delay_s = RECONNECT_DELAY_S[0]
        self.counts = CacheCounts()

    @property
    def live(self) -> bool:
        """True while the invalidation listener is subscribed (only then are reads kept)."""
        return self._live

    @property
    def listening_to(self) -> frozenset[str]:
        """The nodes whose announcements are heard now (``host:port`` on a cluster)."""
        return self._listened

    async def read(
        self,
        cache_key: str,
        redis_keys: tuple[str, ...],
        load: Callable[[], Awaitable[T]],
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """``load()``'s result, from memory when a still-valid copy exists. Exceptions are never kept, nor results
        that ``keep`` turns down (values that something other than a write to ``redis_keys`` may change)."""
        entry = self._entries.get(cache_key)
        if entry is not None:
            if time.monotonic() - entry.stored_at < self._max_age_s:
                self.counts.hits += 1
                return entry.value  # type: ignore[no-any-return]
            self._evict(cache_key)
        self.counts.misses += 1
        if not self._live or self._max_entries <= 0:
            return await load()
        pending = _Load(redis_keys)
        for key in redis_keys:
            self._loading.setdefault(key, []).append(pending)
        try:
            value = await load()
        finally:
            self._unregister(pending)
        if pending.still_valid and self._live and (keep is None or keep(value)) and self._listened_to(redis_keys):
            self._store(cache_key, _Entry(value, redis_keys, time.monotonic()))
        return value

    def _listened_to(self, redis_keys: tuple[str, ...]) -> bool:
        """True if the node that serves these keys (one slot: a space's) announces their changes to us."""
        if not isinstance(self._redis, RedisCluster) or not redis_keys:
            return True
        try:
            node = self._redis.get_node_from_key(redis_keys[0])
        except RedisClusterException:  # the slot is not covered right now
            return False
        return node is not None and node.name in self._listened

    async def writing(self, redis_keys: Iterable[str], write: Awaitable[T]) -> T:
        """Await ``write``, a change to ``redis_keys``, then drop what was built from them: the caller (and this
        instance) reads its own write at once. Also when it fails, since the change may have been made."""
        try:
            return await write
        finally:
            self.forget(redis_keys)

    def forget(self, redis_keys: Iterable[str]) -> None:
        """Drop everything built from ``redis_keys`` (called for local writes and for announced changes)."""
        for key in redis_keys:
            for cache_key in tuple(self._dependents.get(key, ())):
                self._evict(cache_key)
            for pending in self._loading.get(key, ()):
                pending.still_valid = False

    def clear(self) -> None:
        self._entries.clear()
        self._dependents.clear()
        for pendings in self._loading.values():
            for pending in pendings:
                pending.still_valid = False
        self.counts.resets += 1

    async def listen(self, stopping: asyncio.Event) -> None:
        """Keep the invalidation listener subscribed until ``stopping`` is set; reconnect when it is lost."""
        while not stopping.is_set():
            try:
                await self._listen_once(stopping)
            except ResponseError as exc:  # tracking refused (ACLs, a managed Redis): asking again will not help
                log.error("redis refused client tracking (%s); the local read cache stays off", exc)
                return
            except Exception as exc:
                log.warning("redis invalidation listener lost: %s; local read cache off until it is back", exc)
            finally:
                self._go_dark()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._reconnect_delay_s)
            self._reconnect_delay_s = min(self._reconnect_delay_s * 2, RECONNECT_DELAY_S[1])

    async def _listen_once(self, stopping: asyncio.Event) -> None:
        """Subscribe on every node, go live, then apply announcements until a connection fails, the cluster's
        nodes change or ``stopping`` is set."""
        targets = await self._targets()
        connections: dict[str, AbstractConnection] = {}
        try:
            for name, make in targets.items():
                connections[name] = make()
                await _subscribe(connections[name])
            self.clear()  # anything kept before this point may have missed an announcement
            self._listened = frozenset(connections)
            self._live = True
            self._reconnect_delay_s = RECONNECT_DELAY_S[0]
            await self._apply_announcements(connections, stopping)
        finally:
            self._go_dark()
            for connection in connections.values():
                await connection.disconnect()

    async def _targets(self) -> dict[str, ConnectionFactory]:
        """Node name → how to open a listener connection to it: the one server, or every usable cluster node.

        Listener connections are opened outside the pools: each blocks on reads for as long as it lives and
        speaks RESP2 pub/sub."""
        if isinstance(self._redis, RedisCluster):
            return await _cluster_targets(self._redis)
        pool = self._redis.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "protocol": 2}
        return {STANDALONE: lambda: pool.connection_class(**kwargs)}

    async def _apply_announcements(self, connections: dict[str, AbstractConnection], stopping: asyncio.Event) -> None:
        last_heard = dict.fromkeys(connections, time.monotonic())

        async def watchdog() -> None:
            while not stopping.is_set():
                await asyncio.sleep(PING_INTERVAL_S)
                for name, connection in connections.items():
                    if time.monotonic() - last_heard[name] > SILENCE_LIMIT_S:
                        self._go_dark()
                        raise ConnectionError(f"invalidation listener on {name} stopped answering pings")
                    await connection.send_command("PING")
                if isinstance(self._redis, RedisCluster) and set(await self._targets()) != set(connections):
                    self._go_dark()
                    raise TopologyChanged("the cluster's nodes changed")

        async def reader(name: str, connection: AbstractConnection) -> None:
            while True:
                message = await connection.read_response()
                last_heard[name] = time.monotonic()
                self._apply(message)

        tasks = [asyncio.create_task(reader(name, c)) for name, c in connections.items()]
        tasks.append(asyncio.create_task(watchdog()))
        stopped = asyncio.create_task(stopping.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and not stopping.is_set():
                    task.result()  # raises the connection error, the silence or the topology change
        finally:
            for task in (*tasks, stopped):
                task.cancel()
            await asyncio.gather(*tasks, stopped, return_exceptions=True)

    def _apply(self, message: Any) -> None:
        """``[b'message', channel, [keys…] | None]``; None means everything changed (FLUSHDB, FLUSHALL)."""
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return  # subscription confirmations and pongs
        keys = message[2]
        if keys is None:
            self.clear()
            return
        self.counts.invalidations += len(keys)
        self.forget(key.decode() for key in keys)

    def _go_dark(self) -> None:
        if self._live:
            self._live = False
            self._listened = frozenset()
            self.clear()

    def _store(self, cache_key: str, entry: _Entry) -> None:
        if cache_key not in self._entries and len(self._entries) >= self._max_entries:
            self._evict(next(iter(self._entries)))  # the oldest stored
        self._entries[cache_key] = entry
        for key in entry.redis_keys:
            self._dependents.setdefault(key, set()).add(cache_key)

    def _evict(self, cache_key: str) -> None:
        entry = self._entries.pop(cache_key, None)
        if entry is None:
            return
        for key in entry.redis_keys:
            names = self._dependents.get(key)
            if names is not None:
                names.discard(cache_key)
                if not names:
                    del self._dependents[key]

    def _unregister(self, pending: _Load) -> None:
        for key in pending.redis_keys:
            pendings = self._loading.get(key)
            if pendings is None:
                continue
            pendings.remove(pending)
            if not pendings:
                del self._loading[key]


async def _subscribe(connection: AbstractConnection) -> None:
    """Connect, turn on broadcast tracking of every space's keys redirected to this connection, and subscribe it
    to the announcements."""
    await connection.connect()  # type: ignore[no-untyped-call]
    await connection.send_command("CLIENT", "SETNAME", LISTENER_NAME)  # visible to operators in CLIENT LIST
    await connection.read_response()
    await connection.send_command("CLIENT", "ID")
    client_id = await connection.read_response()
    await connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", TRACKED_PREFIX)
    await connection.read_response()
    await connection.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
    await connection.read_response()


async def _cluster_targets(cluster: RedisCluster) -> dict[str, ConnectionFactory]:
    """Every node of the cluster that may hold data, primary or replica, as ``CLUSTER NODES`` lists them; its
    connections are made like the client's own (credentials, TLS)."""
    nodes: dict[str, dict[str, Any]] = await cluster.cluster_nodes()
    template = cluster.get_nodes()[0]
    targets: dict[str, ConnectionFactory] = {}
    for address, details in nodes.items():
        if set(str(details["flags"]).split(",")) & UNUSABLE_NODE_FLAGS:
            continue
        host, _, port = address.rpartition(":")
        kwargs = {**template.connection_kwargs, "host": host, "port": int(port), "socket_timeout": None, "protocol": 2}
        targets[address] = functools.partial(template.connection_class, **kwargs)
    return targets
