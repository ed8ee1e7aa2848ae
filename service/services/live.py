"""The live hub: this process's log streams (Server-Sent Events) and the feeds that serve them.

One *feed* per followed job and filter (levels, text) reads each new range of lines once — whatever the number
of streams following it — and hands it to them as a batch. Feeds are woken by the job's ``…:live`` pub/sub
channel (`keyspace.SpaceKeys.log_live`, sharded pub/sub: published by every append's finishing script), through
one pub/sub connection for the whole process (on a Redis Cluster, one per node owning a followed channel), and
also poll every ``stream_poll_interval_s``: pub/sub is at-most-once, so a lost wake-up only delays. Status and
progress are polled by the feed too (once per job and filter, not per stream).

A *stream* holds only its cursor (every matching line up to it was written to its client) and a small bounded
queue of batches. A stream whose queue is full, and every stream at its start, reads from Elasticsearch by its
own cursor at its client's pace (one page at a time), and joins the feed again once it has caught up. So no line
is skipped or repeated, and a slow client never makes the process buffer more than a page and its queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub

from service.domain.errors import JobNotFound, TooManyStreams, Unavailable
from service.domain.jobs import TERMINAL_STATUSES
from service.domain.logs import LOGS_LIMIT_MAX, LogQuery, StreamStart
from service.services.logs import LogService
from service.settings import Settings
from service.stores.keyspace import RedisClient, SpaceKeys, text
from service.stores.redis_jobs import JobStore

log = logging.getLogger(__name__)
RETRY_HINT_MS = 2000  # how long an EventSource waits before it reconnects
SUBSCRIBE_CHECK_S = 0.25  # the pub/sub reader looks at the channels wanted at least this often
RECONNECT_DELAY_MAX_S = 2.0
ERROR_WRITE_TIMEOUT_S = 1.0  # the last words to a client that stopped reading
MAX_EVENT_BYTES = 128 * 1024  # a logs event holds a page (up to 500 lines), cut where its data passes this

Write = Callable[[bytes], Awaitable[None]]


def sse_event(kind: str, payload: Any, event_id: int | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass(frozen=True, slots=True)
class FeedKey:
    space_id: str
    job_id: str
    levels: tuple[str, ...]
    text: str | None

    @property
    def channel(self) -> str:
        return SpaceKeys(self.space_id).log_live(self.job_id)


@dataclass(frozen=True, slots=True)
class Batch:
    lines: list[dict[str, Any]]  # ascending seq
    covered_seq: int  # every matching line up to it is in this batch or an earlier one


class StreamClosed(Exception):
    """The client stopped reading for longer than allowed."""


@dataclass(eq=False)
class Stream:
    hub: LiveHub
    feed: Feed
    key_id: str
    start: StreamStart
    cursor: int | None  # None until the tail was read
    batches: collections.deque[Batch] = field(default_factory=collections.deque)
    lagging: bool = True  # reads Elasticsearch by its own cursor; the feed hands it nothing
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _sent_status: str | None = None
    _sent_progress: Any = None
    _last_write: float = 0.0

    def offer(self, batch: Batch) -> None:
        """The feed's new lines: queued, unless the queue is full (then the stream reads them itself)."""
        if self.lagging:
            return
        if len(self.batches) >= self.hub.settings.stream_queue_batches:
            self.lagging = True
        else:
            self.batches.append(batch)
        self.wake.set()

    async def run(self, write: Write) -> None:
        """Write the stream's events until the job's log ends, the process shuts down or the client goes."""
        try:
            await self._write(write, f"retry: {RETRY_HINT_MS}\n\n".encode())
            await self._follow(write)
        except (ConnectionError, asyncio.CancelledError):  # the client went away
            raise
        except StreamClosed:
            message = "Client too slow: it read nothing for too long; reconnect with Last-Event-ID"
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ERROR_WRITE_TIMEOUT_S):
                    await write(sse_event("error", {"error": message}))
        except Exception as exc:
            log.warning("log stream of job %s interrupted: %s", self.feed.key.job_id, exc)
            message = "Stream interrupted (a store is unavailable); reconnect with Last-Event-ID"
            with contextlib.suppress(Exception):
                await self._write(write, sse_event("error", {"error": message}))

    async def _follow(self, write: Write) -> None:
        feed, settings = self.feed, self.hub.settings
        key = feed.key
        if self.cursor is None:
            tail = dataclasses.replace(self.start.query, mode="latest", seq=0, limit=self.start.tail)
            page, covered = await self.hub.logs.read_covering(key.space_id, key.job_id, tail)
            await self._write_lines(write, page["logs"])
            self.cursor = covered
        await feed.ready.wait()
        closes_at = time.monotonic() + settings.stream_max_duration_s
        while True:
            self.wake.clear()
            if self.hub.shutting_down or time.monotonic() >= closes_at:
                await self._write(write, sse_event("reconnect", {"lastSeq": self.cursor}))
                return
            await self._write_changes(write)
            if self.batches:
                batch = self.batches.popleft()
                await self._write_lines(write, [line for line in batch.lines if line["seq"] > self.cursor])
                self.cursor = max(self.cursor, batch.covered_seq)
                continue
            if self.lagging:
                await self._catch_up(write)
                continue
            if feed.ended_seq is not None and self.cursor >= feed.ended_seq:
                await self._write(
                    write, sse_event("end", {"status": feed.status, "lastSeq": feed.ended_seq}, feed.ended_seq)
                )
                return
            idle_s = time.monotonic() - self._last_write
            if idle_s >= settings.stream_heartbeat_s:
                await self._write(write, b": ping\n\n")
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(settings.stream_heartbeat_s - idle_s, closes_at - time.monotonic())):
                    await self.wake.wait()

    async def _catch_up(self, write: Write) -> None:
        key = self.feed.key
        assert self.cursor is not None
        query = dataclasses.replace(self.start.query, mode="after", seq=self.cursor, limit=LOGS_LIMIT_MAX)
        page, covered = await self.hub.logs.read_covering(key.space_id, key.job_id, query)
        await self._write_lines(write, page["logs"])
        self.cursor = max(self.cursor, covered)
        if not page["cursor"]["hasMore"] and self.cursor >= self.feed.covered_seq:
            self.lagging = False  # from here the feed's batches continue exactly where this read ended
        elif not page["logs"]:
            # this read saw an older watermark than the feed did (a cached window): a moment for it to catch up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self.wake.wait()

    async def _write_changes(self, write: Write) -> None:
        feed = self.feed
        if feed.status is not None and feed.status != self._sent_status:
            self._sent_status = feed.status
            await self._write(write, sse_event("status", {"status": feed.status}))
        if feed.progress is not None and feed.progress != self._sent_progress:
            self._sent_progress = feed.progress
            await self._write(write, sse_event("progress", feed.progress))

    async def _write_lines(self, write: Write, lines: list[dict[str, Any]]) -> None:
        """As ``logs`` events of at most about `MAX_EVENT_BYTES` each (a client reads an event's data as one
        line), each with its last seq as id, so a client resuming from any of them misses and repeats nothing."""
        chunk: list[orjson.Fragment] = []
        size = 0
        for number, line in enumerate(lines):
            encoded = orjson.dumps(line)
            chunk.append(orjson.Fragment(encoded))
            size += len(encoded)
            if size >= MAX_EVENT_BYTES or number == len(lines) - 1:
                await self._write(write, sse_event("logs", {"logs": chunk}, int(line["seq"])))
                chunk, size = [], 0

    async def _write(self, write: Write, data: bytes) -> None:
        # Each write is a whole event: one cut short by the timeout has reached the transport in full anyway.
        try:
            async with asyncio.timeout(self.hub.settings.stream_stuck_timeout_s):
                await write(data)
        except TimeoutError:
            raise StreamClosed() from None
        self._last_write = time.monotonic()


class Feed:
    """One reader of one job's new lines (matching one filter), for every stream of this process following it."""

    def __init__(self, hub: LiveHub, key: FeedKey) -> None:
        self.hub = hub
        self.key = key
        self.streams: set[Stream] = set()
        self.covered_seq = 0  # every matching line up to it was offered to the streams following live
        self.status: str | None = None
        self.progress: Any = None
        self.ended_seq: int | None = None  # the job ended and its log stayed settled for the quiet period
        self.ready = asyncio.Event()  # the first look at the job is done
        self.wake = asyncio.Event()
        self._quiet_since: float | None = None
        self._quiet_seq = -1
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        settings = self.hub.settings
        while True:
            self.wake.clear()
            try:
                await self._refresh()
            except JobNotFound:
                pass  # the job is gone: its streams stay until they are closed
            except Exception as exc:
                log.warning("live feed of job %s: %s", self.key.job_id, exc)
            self.ready.set()
            for stream in self.streams:
                stream.wake.set()
            wait_s = settings.stream_poll_interval_s
            if self._quiet_since is not None and self.ended_seq is None:
                wait_s = min(wait_s, max(0.01, self._quiet_since + settings.stream_quiet_period_s - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self.wake.wait()

    async def _refresh(self) -> None:
        key, logs = self.key, self.hub.logs
        job = await self.hub.jobs.get(key.space_id, key.job_id)
        self.status = str(job["status"])
        progress = await self.hub.jobs.get_progress(key.space_id, key.job_id)
        self.progress = orjson.loads(orjson.dumps(progress))  # a record as stored (a Fragment) compares as JSON
        if self.progress.get("timestamp") is None:
            self.progress = None
        query = LogQuery("after", self.covered_seq, LOGS_LIMIT_MAX, key.levels, key.text)
        while True:
            live = [stream for stream in self.streams if not stream.lagging]
            if not live:
                # nobody to hand lines to: only the watermark moves (a stream that catches up starts from it)
                window = await logs.seq_state(key.space_id, key.job_id)
                if any(not stream.lagging for stream in self.streams):
                    # A stream caught up meanwhile, up to the old mark: the lines above it are its to get.
                    continue
                self.covered_seq = max(self.covered_seq, window.visible_seq)
                break
            page, covered = await logs.read_covering(key.space_id, key.job_id, query)
            batch = Batch(page["logs"], covered)
            for stream in self.streams:
                stream.offer(batch)
            self.covered_seq = max(self.covered_seq, covered)
            if not page["cursor"]["hasMore"]:
                break
            query = dataclasses.replace(query, seq=self.covered_seq)
        await self._check_end()

    async def _check_end(self) -> None:
        if self.status not in TERMINAL_STATUSES:
            self._quiet_since, self.ended_seq = None, None
            return
        state = await self.hub.logs.seq_state(self.key.space_id, self.key.job_id)
        if not state.settled or state.visible_seq > self.covered_seq:
            self._quiet_since, self.ended_seq = None, None
            self.wake.set()  # lines to read, or a write to wait for: look again soon
            return
        now = time.monotonic()
        if self._quiet_since is None or state.visible_seq != self._quiet_seq:
            self._quiet_since, self._quiet_seq, self.ended_seq = now, state.visible_seq, None
        elif now - self._quiet_since >= self.hub.settings.stream_quiet_period_s:
            self.ended_seq = state.visible_seq


class LiveHub:
    """Every log stream of this process; see the module docstring."""

    def __init__(self, redis: RedisClient, logs: LogService, jobs: JobStore, settings: Settings) -> None:
        self.redis = redis
        self.logs = logs
        self.jobs = jobs
        self.settings = settings
        self.shutting_down = False
        self._feeds: dict[FeedKey, Feed] = {}
        self._channels: dict[str, set[Feed]] = {}
        self._streams_per_key: collections.Counter[str] = collections.Counter()
        self._stream_count = 0
        self._channels_changed = asyncio.Event()

    @property
    def stream_count(self) -> int:
        return self._stream_count

    async def open(self, space_id: str, job_id: str, key_id: str, start: StreamStart) -> Stream | None:
        """A stream of the job's log from ``start``; None when a stream resuming there has nothing more to say
        (the job ended, its log is settled and nothing matching lies beyond the cursor: answer 204)."""
        job = await self.jobs.get(space_id, job_id)  # JobNotFound: 404
        if job["status"] in TERMINAL_STATUSES and start.after_seq is not None:
            state = await self.logs.seq_state(space_id, job_id)
            if state.settled:
                rest = dataclasses.replace(start.query, mode="after", seq=start.after_seq, limit=1)
                page, _ = await self.logs.read_covering(space_id, job_id, rest)
                if not page["logs"]:
                    return None
        if self.shutting_down or self._stream_count >= self.settings.streams_max:
            raise Unavailable("Too many log streams on this instance; retry later")
        if self._streams_per_key[key_id] >= self.settings.streams_per_key_max:
            raise TooManyStreams(
                f"This API key has {self.settings.streams_per_key_max} log streams open on this instance already"
            )
        key = FeedKey(space_id, job_id, start.query.levels, start.query.text)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(self, key)
            self._channels.setdefault(key.channel, set()).add(feed)
            self._channels_changed.set()
            feed.task = asyncio.create_task(feed.run(), name=f"joblens-live-feed-{job_id}")
        stream = Stream(self, feed, key_id, start, start.after_seq)
        feed.streams.add(stream)
        self._stream_count += 1
        self._streams_per_key[key_id] += 1
        return stream

    def close(self, stream: Stream) -> None:
        feed = stream.feed
        if stream not in feed.streams:
            return
        feed.streams.discard(stream)
        self._stream_count -= 1
        self._streams_per_key[stream.key_id] -= 1
        if self._streams_per_key[stream.key_id] <= 0:
            del self._streams_per_key[stream.key_id]
        if not feed.streams:
            self._retire(feed)

    def _retire(self, feed: Feed) -> None:
        del self._feeds[feed.key]
        feeds = self._channels[feed.key.channel]
        feeds.discard(feed)
        if not feeds:
            del self._channels[feed.key.channel]
            self._channels_changed.set()
        if feed.task is not None:
            feed.task.cancel()

    def shut_down(self) -> None:
        """Every stream writes ``reconnect`` (between two events) and ends; no new stream is opened."""
        self.shutting_down = True
        for feed in self._feeds.values():
            for stream in feed.streams:
                stream.wake.set()

    async def stop(self) -> None:
        tasks = [feed.task for feed in self._feeds.values() if feed.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def listen(self, stopping: asyncio.Event) -> None:
        """The process's one pub/sub connection: subscribed to the channels of the jobs followed, it wakes their
        feeds. After a lost connection it connects again and subscribes to them all again."""
        delay_s = 0.1
        while not stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._listen_once(pubsub, stopping)
            except Exception as exc:
                log.warning("live pub/sub connection lost (%s); reconnecting in %.1fs", exc, delay_s)
                for feed in self._feeds.values():
                    feed.wake.set()  # what was announced meanwhile is read by polling; look now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await stopping.wait()
                delay_s = min(delay_s * 2, RECONNECT_DELAY_MAX_S)
            else:
                delay_s = 0.1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen_once(self, pubsub: PubSub, stopping: asyncio.Event) -> None:
        """Sharded pub/sub (SSUBSCRIBE; the appends SPUBLISH): on a cluster a job's channel lives on its space's
        slot, so only that shard carries its messages, and the cluster client keeps one connection per node that
        owns a followed channel (moving a subscription when its slot moves). Standalone Redis 7 has it too."""
        subscribed: set[str] = set()
        while not stopping.is_set():
            self._channels_changed.clear()
            wanted = set(self._channels)
            if wanted - subscribed:
                await pubsub.ssubscribe(*(wanted - subscribed))
            if subscribed - wanted:
                await pubsub.sunsubscribe(*(subscribed - wanted))
            subscribed = wanted
            if not subscribed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SUBSCRIBE_CHECK_S):
                        await self._channels_changed.wait()
                continue
            message = await _next_message(pubsub)
            if message is not None and message.get("type") == "smessage":
                for feed in self._channels.get(text(message["channel"]), ()):
                    feed.wake.set()


async def _next_message(pubsub: PubSub) -> dict[str, Any] | None:
    """The next message on any subscribed channel, None after `SUBSCRIBE_CHECK_S` without one. A cluster's pub/sub
    reads its per-node connections in turn (each for up to that long)."""
    if isinstance(pubsub, ClusterPubSub):
        message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=SUBSCRIBE_CHECK_S)
        if message is None and not pubsub.node_pubsub_mapping:
            await asyncio.sleep(SUBSCRIBE_CHECK_S)  # no node connection yet: no busy loop
        return message
    answer: dict[str, Any] | None = await pubsub.get_message(timeout=SUBSCRIBE_CHECK_S)
    return answer
