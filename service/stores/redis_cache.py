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

Cost: every change to a space's keys (appends, transitions, rate-limit leases included) sends each instance one
short message, a few microseconds of work. With Redis Cluster, each primary would need its own listener.

Keys owned: none (the connection only listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACKED_PREFIX = "jl:{"  # every key of every space (see `keyspace.SpaceKeys`)
INVALIDATE_CHANNEL = "__redis__:invalidate"
LISTENER_NAME = "joblens-invalidations"
PING_INTERVAL_S = 1.0
SILENCE_LIMIT_S = 3.0  # a listener silent this long (pings unanswered) is treated as lost
RECONNECT_DELAY_S = (0.1, 2.0)


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
    def __init__(self, redis: Redis, max_entries: int, max_age_s: float = 10.0) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._entries: dict[str, _Entry] = {}
        self._dependents: dict[str, set[str]] = {}  # Redis key → cache keys built from it
        self._loading: dict[str, list[_Load]] = {}  # Redis key → reads in flight that touch it
        self._live = False
        self._reconnect_delay_s = RECONNECT_DELAY_S[0]
        self.counts = CacheCounts()

    @property
    def live(self) -> bool:
        """True while the invalidation listener is subscribed (only then are reads kept)."""
        return self._live

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
        if pending.still_valid and self._live and (keep is None or keep(value)):
            self._store(cache_key, _Entry(value, redis_keys, time.monotonic()))
        return value

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
        """Subscribe, go live, then apply announcements until the connection fails or ``stopping`` is set."""
        pool = self._redis.connection_pool
        # Its own connection, outside the pool: it blocks on reads for as long as it lives and speaks RESP2 pub/sub.
        connection: AbstractConnection = pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": None, "protocol": 2}
        )
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            await connection.send_command("CLIENT", "SETNAME", LISTENER_NAME)  # visible to operators in CLIENT LIST
            await connection.read_response()
            await connection.send_command("CLIENT", "ID")
            client_id = await connection.read_response()
            await connection.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", TRACKED_PREFIX
            )
            await connection.read_response()
            await connection.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            await connection.read_response()
            self.clear()  # anything kept before this point may have missed an announcement
            self._live = True
            self._reconnect_delay_s = RECONNECT_DELAY_S[0]
            await self._apply_announcements(connection, stopping)
        finally:
            self._go_dark()
            await connection.disconnect()

    async def _apply_announcements(self, connection: AbstractConnection, stopping: asyncio.Event) -> None:
        last_heard = time.monotonic()

        async def watchdog() -> None:
            while not stopping.is_set():
                await asyncio.sleep(PING_INTERVAL_S)
                if time.monotonic() - last_heard > SILENCE_LIMIT_S:
                    self._go_dark()
                    await connection.disconnect()  # fails the pending read below
                    return
                await connection.send_command("PING")

        async def reader() -> None:
            nonlocal last_heard
            while True:
                message = await connection.read_response()
                last_heard = time.monotonic()
                self._apply(message)

        reading = asyncio.create_task(reader())
        watching = asyncio.create_task(watchdog())
        stopped = asyncio.create_task(stopping.wait())
        try:
            done, _ = await asyncio.wait({reading, watching, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                reading.result()  # raises the connection error
            if watching in done and not stopping.is_set():
                watching.result()
                raise ConnectionError("invalidation listener stopped answering pings")
        finally:
            for task in (reading, watching, stopped):
                task.cancel()
            await asyncio.gather(reading, watching, stopped, return_exceptions=True)

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
