"""The asynchronous joblens client (aiohttp): every call of the public HTTP API, typed, with bounded retries.

Retries: 429 and 503 answers, and connections that could not be made, are retried with exponential backoff and
jitter (at least the server's ``Retry-After``), ``retries`` times at most. A request that was sent but got no
answer is retried only when sending it twice does what sending it once does: reads, progress reports,
keepalives, and log appends — which always carry an ``Idempotency-Key``, generated per batch and reused by its
retries, so a retry never appends a line twice.

One client belongs to one event loop (its aiohttp session is made on first use, in the loop that uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from joblens_client.backoff import Backoff
from joblens_client.errors import (
    Conflict,
    JoblensError,
    RateLimited,
    ServerError,
    Unavailable,
    Unreachable,
    error_for,
)
from joblens_client.records import (
    Appended,
    Ended,
    FollowItem,
    Job,
    LogLine,
    LogPage,
    NewLogLine,
    Progress,
    ProgressChanged,
    SearchPage,
    StageProgress,
    StatusChanged,
    iso_time,
)
from joblens_client.sse import SseEvent, SseParser

__all__ = ["AsyncJoblens"]

API_PREFIX = "/api/v1"
USER_AGENT = "joblens-client/0.1"
MAX_APPEND_LINES = 1000  # the server's JOBLENS_MAX_LOG_LINES default
EXPORT_CHUNK_BYTES = 64 * 1024
KEY_PREFIX = "emit_"
ULID_CHARS = 26

Levels = str | Sequence[str] | None
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Replay:
    """What a retry may assume about a call. ``safe``: sending it twice does what sending it once does, so a
    request that got no answer may be sent again. ``conflict_means_running``: a 409 can only mean that an
    earlier attempt with the same ``Idempotency-Key`` still runs (the client never reuses a key with another
    body), so it is worth waiting for."""

    safe: bool
    conflict_means_running: bool = False


READ = Replay(safe=True)
ONCE = Replay(safe=False)  # creates, claims, transitions and events: never sent again once they may have arrived
APPEND = Replay(safe=True, conflict_means_running=True)


def retryable(error: JoblensError, replay: Replay) -> bool:
    if isinstance(error, RateLimited | Unreachable):
        return True  # refused before anything happened, or nothing was sent
    if isinstance(error, Unavailable):
        return error.status == 503 or replay.safe  # 503: nothing was done; no answer: maybe done
    return isinstance(error, Conflict) and replay.conflict_means_running


def space_of_key(api_key: str) -> str | None:
    """The space an API key belongs to: keys read ``emit_<spaceId>_<secret>``."""
    if (
        api_key.startswith(KEY_PREFIX)
        and api_key[len(KEY_PREFIX) + ULID_CHARS : len(KEY_PREFIX) + ULID_CHARS + 1] == "_"
    ):
        return api_key[len(KEY_PREFIX) : len(KEY_PREFIX) + ULID_CHARS]
    return None


def api_root(base_url: str) -> str:
    """``http://host:8080``, ``http://host:8080/``, ``http://host/prefix`` or one ending in ``/api/v1``: the API."""
    root = base_url.rstrip("/")
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"a joblens URL starts with http:// or https://, got {base_url!r}")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX


def query(**values: Any) -> list[tuple[str, str]]:
    """Query parameters, leaving out what is None or False; lists (levels) comma-separated, times as ISO."""
    params: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            text = "true"
        elif isinstance(value, datetime):
            text = iso_time(value)
        elif isinstance(value, list | tuple):
            text = ",".join(str(part) for part in value)
        else:
            text = str(value)
        params.append((name, text))
    return params


def levels_of(level: Levels) -> list[str] | None:
    if level is None:
        return None
    return [level] if isinstance(level, str) else list(level)


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def retry_after_of(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # an HTTP date: the backoff alone decides


async def error_of(response: aiohttp.ClientResponse) -> JoblensError:
    """The typed exception of an error answer, with the API's ``{"error": ...}`` message."""
    raw = await response.read()
    try:
        message = str(orjson.loads(raw)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = raw[:300].decode(errors="replace").strip() or response.reason or f"HTTP {response.status}"
    retry_after_s = retry_after_of(response.headers.get("Retry-After"))
    return error_for(response.status, message, response.headers.get("X-Request-Id"), retry_after_s)


def encode_line(line: NewLogLine | Mapping[str, Any]) -> bytes:
    return orjson.dumps(line.to_json() if isinstance(line, NewLogLine) else dict(line))


def appended_body(encoded_lines: Sequence[bytes]) -> bytes:
    """``{"logs": [...]}`` from lines already encoded as JSON."""
    return b'{"logs":[' + b",".join(encoded_lines) + b"]}"


def new_idempotency_key() -> str:
    return f"jlc-{uuid.uuid4().hex}"


@dataclass
class FollowState:
    """One follow across its connections: the cursor it resumes from (every matching line up to it was
    yielded), the server's reconnect hint, and why the last connection ended."""

    cursor: int
    retry_s: float = 2.0
    connected: bool = False
    ended: Ended | None = None
    reconnect: Literal["now", "after-hint"] | None = None


class AsyncJoblens:
    """A joblens client. ``base_url``: the service (``http://127.0.0.1:8080``); ``api_key``: sent as the
    ``x-api-key`` header, never logged; ``timeout_s``: per attempt of a call; ``retries``: at most this many
    retries of a call (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is needed (JOBLENS_API_KEY)")
        self.base_url = base_url.rstrip("/")
        self.space_id = space_of_key(api_key)  # the default space of the calls that take one
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff = backoff or Backoff()
        self._api = api_root(base_url)
        self._api_key = api_key
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the key
        return f"AsyncJoblens({self.base_url!r}, space_id={self.space_id!r})"

    async def __aenter__(self) -> AsyncJoblens:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- jobs and progress ------------------------------------------------------------------------------------

    async def create_job(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        space: str | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        scheduled_for: str | datetime | None = None,
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
    ) -> Job:
        fields: dict[str, Any] = {"name": name, "payload": payload, "maxRetries": max_retries}
        fields |= {"timeoutSeconds": timeout_seconds, "callbackUrl": callback_url, "callbackHeaders": callback_headers}
        fields["scheduledFor"] = None if scheduled_for is None else iso_time(scheduled_for)
        job = {key: value for key, value in fields.items() if value is not None}
        return Job.from_json(await self._json("POST", f"/spaces/{self._space(space)}/jobs", body=job, replay=ONCE))

    async def create_jobs(self, jobs: Sequence[Mapping[str, Any]], *, space: str | None = None) -> list[Job]:
        """Several jobs at once (all or nothing), each given with the API's field names."""
        created = await self._json("POST", f"/spaces/{self._space(space)}/jobs", body=list(jobs), replay=ONCE)
        return [Job.from_json(job) for job in created]

    async def list_jobs(
        self,
        *,
        space: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Job]:
        """Newest first; ``limit`` at most 100."""
        params = query(status=status, limit=limit, offset=offset)
        return [Job.from_json(job) for job in await self._json("GET", f"/spaces/{self._space(space)}/jobs", params)]

    async def get_job(self, job_id: str) -> Job:
        """The job with its callback fields and events."""
        return Job.from_json(await self._json("GET", f"/jobs/{job_id}"))

    async def get_progress(self, job_id: str) -> Progress:
        return Progress.from_json(await self._json("GET", f"/jobs/{job_id}/progress"))

    async def report_progress(
        self,
        job_id: str,
        percent: float,
        message: str,
        stages: Mapping[str, StageProgress | float] | None = None,
    ) -> Progress:
        """Report progress (this also resets the job's execution timeout); ``stages`` become its subProgress."""
        report: dict[str, Any] = {"percent": percent, "message": message}
        if stages:
            report["subProgress"] = {name: _stage(stage) for name, stage in stages.items()}
        return Progress.from_json(await self._json("POST", f"/jobs/{job_id}/progress", body=report, replay=READ))

    # ---- reading logs -----------------------------------------------------------------------------------------

    async def read_logs(
        self,
        job_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        around: int | None = None,
        limit: int | None = None,
        level: Levels = None,
        q: str | None = None,
        highlight: bool = False,
    ) -> LogPage:
        """One page: after a seq (tailing), before one (history), around one (context), or the newest lines."""
        params = query(after=after, before=before, around=around, limit=limit, level=levels_of(level), q=q)
        params += query(highlight=highlight)
        page = LogPage.from_json(await self._json("GET", f"/jobs/{job_id}/logs", params))
        if around is not None and page.cursor.mode != "around":  # an older server ignores the parameter
            raise ServerError(f"joblens at {self.base_url} does not support around= (mode {page.cursor.mode!r})")
        return page

    async def pages(
        self,
        job_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        around: int | None = None,
        limit: int | None = None,
        level: Levels = None,
        q: str | None = None,
        highlight: bool = False,
    ) -> AsyncGenerator[LogPage, None]:
        """Pages of a job's log, each in ascending seq order. ``after`` (default 0: the whole log): newer and newer
        pages up to the current end. ``before``: older and older pages down to the first line. ``around``: the
        page around that seq, then the newer pages after it."""
        if sum(bound is not None for bound in (after, before, around)) > 1:
            raise ValueError("give one of after, before and around")
        filters: dict[str, Any] = {"limit": limit, "level": level, "q": q, "highlight": highlight}
        if around is not None:
            page = await self.read_logs(job_id, around=around, **filters)
            yield page
            if not page.cursor.has_newer or page.cursor.newest_seq is None:
                return
            after = page.cursor.newest_seq
        if before is not None:
            while True:
                page = await self.read_logs(job_id, before=before, **filters)
                yield page
                if not page.cursor.has_more or page.cursor.oldest_seq is None:
                    return
                before = page.cursor.oldest_seq
        after = after or 0
        while True:
            page = await self.read_logs(job_id, after=after, **filters)
            yield page
            if not page.cursor.has_more or page.cursor.newest_seq is None:
                return
            after = page.cursor.newest_seq

    async def lines(
        self, job_id: str, *, after: int = 0, level: Levels = None, q: str | None = None
    ) -> AsyncGenerator[LogLine, None]:
        """Every line after ``after`` up to the current end, once each, in order."""
        async with contextlib.aclosing(self.pages(job_id, after=after, limit=500, level=level, q=q)) as pages:
            async for page in pages:
                for line in page.lines:
                    yield line

    async def follow(
        self,
        job_id: str,
        *,
        after: int | None = None,
        tail: int = 100,
        level: Levels = None,
        q: str | None = None,
        stall_timeout_s: float = 45.0,
        give_up_after_s: float = 60.0,
    ) -> AsyncGenerator[FollowItem, None]:
        """Follow a job's log live: its lines (`LogLine`), status and progress changes (`StatusChanged`,
        `ProgressChanged`), and last `Ended` once the job ended and every line was delivered.

        It starts after seq ``after``, or (``after`` None) with the newest ``tail`` lines. A dropped connection,
        a server that shuts down or says ``error``, or ``stall_timeout_s`` without a byte (the server sends a
        heartbeat every 15 s) is resumed from the last line yielded (``Last-Event-ID``): nothing is skipped or
        repeated. It gives up (`Unavailable`) after ``give_up_after_s`` of failed reconnections."""
        if after is None:
            # The tail is read here rather than by the stream so that the cursor is always known: a stream that
            # drops before its first event resumes exactly where this page ended.
            page = await self.read_logs(job_id, limit=max(tail, 1), level=level, q=q)
            for line in page.lines[-tail:] if tail > 0 else []:
                yield line
            after = page.cursor.newest_seq or 0
        state = FollowState(after)
        failures, failing_since = 0, 0.0
        while state.ended is None:
            state.connected, state.reconnect = False, None
            try:
                connection = self._follow_once(job_id, state, levels_of(level), q, stall_timeout_s)
                async with contextlib.aclosing(connection):
                    async for item in connection:
                        yield item
            except (Unavailable, RateLimited) as error:
                if state.connected:
                    failures = 0  # it was connected: this is a new outage
                if failures == 0:
                    failing_since = time.monotonic()
                if time.monotonic() - failing_since > give_up_after_s:
                    raise
                retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
                await asyncio.sleep(self.backoff.delay_s(failures, retry_after))
                failures += 1
                continue
            failures = 0
            if state.reconnect == "after-hint":
                await asyncio.sleep(state.retry_s)
        yield state.ended

    async def _follow_once(
        self, job_id: str, state: FollowState, levels: list[str] | None, q: str | None, stall_timeout_s: float
    ) -> AsyncGenerator[FollowItem, None]:
        """One connection of a follow; it returns when the stream ends or asks to reconnect, and raises
        `Unavailable` when the connection is cut or stalls."""
        headers = {"Last-Event-ID": str(state.cursor), "Accept": "text/event-stream"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=stall_timeout_s)
        params = query(after=state.cursor, level=levels, q=q)
        response = await self._open("GET", f"/jobs/{job_id}/logs/stream", params, None, headers, timeout)
        try:
            if response.status == 204:  # the job ended and nothing matching lies after the cursor
                state.ended = Ended((await self.get_job(job_id)).status, state.cursor)
                return
            state.connected = True
            parser = SseParser()
            try:
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        for item in self._follow_items(event, state):
                            yield item
                        if state.ended is not None or state.reconnect is not None:
                            return
                    if parser.retry_ms is not None:
                        state.retry_s = parser.retry_ms / 1000
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unavailable(f"the log stream was cut: {describe(exc)}") from exc
            raise Unavailable("the log stream closed without an end event")
        finally:
            response.close()

    @staticmethod
    def _follow_items(event: SseEvent, state: FollowState) -> list[FollowItem]:
        data = orjson.loads(event.data)
        if event.event == "logs":
            lines = [LogLine.from_json(raw) for raw in data["logs"] if raw["seq"] > state.cursor]
            last_seq = int(event.id) if event.id else max((line.seq for line in lines), default=state.cursor)
            state.cursor = max(state.cursor, last_seq)
            return list(lines)
        if event.event == "status":
            return [StatusChanged(data["status"])]
        if event.event == "progress":
            return [ProgressChanged(Progress.from_json(data))]
        if event.event == "end":
            state.cursor = max(state.cursor, int(data["lastSeq"]))
            state.ended = Ended(data["status"], int(data["lastSeq"]))
        elif event.event == "reconnect":
            # the instance shuts down; every matching line up to lastSeq was written to us
            state.cursor = max(state.cursor, int(data["lastSeq"]))
            state.reconnect = "now"
        elif event.event == "error":
            state.reconnect = "after-hint"  # a store failed, or we read too slowly: the server asks to come back
        return []

    # ---- search and export (space-wide search, downloads) -----------------------------------------------------

    async def search_pages(
        self,
        space: str | None = None,
        *,
        q: str | None = None,
        level: Levels = None,
        name: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        limit: int | None = None,
        highlight: bool = False,
        cursor: str | None = None,
    ) -> AsyncGenerator[SearchPage, None]:
        """Pages of the lines of every job of a space that match, newest first; each page's ``next`` cursor
        fetches the following one."""
        path = f"/spaces/{self._space(space)}/logs"
        filters = query(q=q, level=levels_of(level), name=name, since=since, until=until, limit=limit)
        filters += query(highlight=highlight)
        while True:
            page = SearchPage.from_json(await self._json("GET", path, filters + query(cursor=cursor)))
            yield page
            if not page.has_more or page.next is None:
                return
            cursor = page.next

    async def search(
        self,
        space: str | None = None,
        *,
        q: str | None = None,
        level: Levels = None,
        name: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        max_lines: int | None = None,
        highlight: bool = False,
    ) -> AsyncGenerator[LogLine, None]:
        """The matching lines of a space, newest first (each with ``job_id`` and ``job_name``), at most
        ``max_lines``."""
        page_size = None if max_lines is None else min(max_lines, 500)
        found = 0
        pages = self.search_pages(
            space, q=q, level=level, name=name, since=since, until=until, limit=page_size, highlight=highlight
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                for line in page.lines:
                    if max_lines is not None and found >= max_lines:
                        return
                    found += 1
                    yield line

    async def export(
        self,
        job_id: str,
        *,
        format: Literal["ndjson", "text"] = "ndjson",
        level: Levels = None,
        q: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The whole log of a job as a download, in chunks as they arrive (NDJSON of line objects, or text)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s)
        params = query(format=format, level=levels_of(level), q=q)
        path = f"/jobs/{job_id}/logs/export"
        response = await self._retrying(lambda: self._open("GET", path, params, None, None, timeout), READ)
        try:
            if response.status >= 400:
                raise await error_of(response)
            try:
                async for chunk in response.content.iter_chunked(EXPORT_CHUNK_BYTES):
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unavailable(f"the export was cut: {describe(exc)}") from exc
        finally:
            response.close()

    # ---- workers ----------------------------------------------------------------------------------------------

    async def append_logs(
        self, job_id: str, lines: Iterable[NewLogLine | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Appended:
        """Append up to 1,000 lines, durable once this returns. The ``Idempotency-Key`` (a new one unless given)
        is reused by every retry; to retry after this raised, call again with the same lines and the key of the
        exception's ``idempotency_key`` attribute."""
        encoded = [encode_line(line) for line in lines]
        if not 1 <= len(encoded) <= MAX_APPEND_LINES:
            raise ValueError(f"an append holds 1 to {MAX_APPEND_LINES} lines, got {len(encoded)}")
        return await self.append_logs_body(job_id, appended_body(encoded), idempotency_key or new_idempotency_key())

    async def append_logs_body(self, job_id: str, body: bytes, idempotency_key: str) -> Appended:
        """Append an encoded ``{"logs": [...]}`` body: what a caller that keeps a batch across retries (the logging
        handler) sends again, byte for byte, with the same key."""
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        try:
            answer = await self._send("POST", f"/jobs/{job_id}/logs", None, body, headers, APPEND)
        except JoblensError as error:
            error.idempotency_key = idempotency_key
            raise
        return Appended.from_json(answer)

    async def poll(self, names: Sequence[str] | None = None, *, count: int = 1, space: str | None = None) -> list[Job]:
        """Claim up to ``count`` of the oldest pending jobs (of these names): they become ``delivered``."""
        body: dict[str, Any] = {"count": count} | ({"names": list(names)} if names else {})
        answer = await self._json("POST", f"/spaces/{self._space(space)}/jobs/poll", body=body, replay=ONCE)
        return [Job.from_json(job) for job in answer["jobs"]]

    async def claim(self, job_id: str) -> Job:
        return await self._transition(job_id, "claim", None, ONCE)

    async def ack(self, job_id: str) -> Job:
        return await self._transition(job_id, "ack", None, ONCE)

    async def keepalive(self, job_id: str) -> Job:
        return await self._transition(job_id, "keepalive", None, READ)

    async def checkpoint(self, job_id: str, data: Mapping[str, Any]) -> Job:
        return await self._transition(job_id, "checkpoint", dict(data), ONCE)

    async def event(self, job_id: str, type: str, data: Any = None) -> Job:
        body: dict[str, Any] = {"type": type} | ({} if data is None else {"data": data})
        return await self._transition(job_id, "event", body, ONCE)

    async def complete(self, job_id: str, result: Any = None) -> Job:
        return await self._transition(job_id, "complete", None if result is None else {"result": result}, ONCE)

    async def fail(self, job_id: str, error: str | Mapping[str, Any]) -> Job:
        return await self._transition(job_id, "fail", {"error": error if isinstance(error, str) else dict(error)}, ONCE)

    async def kill(self, job_id: str, reason: str | None = None) -> Job:
        return await self._transition(job_id, "kill", None if reason is None else {"reason": reason}, ONCE)

    async def _transition(self, job_id: str, action: str, body: Any, replay: Replay) -> Job:
        return Job.from_json(await self._json("POST", f"/jobs/{job_id}/{action}", body=body, replay=replay))

    # ---- transport --------------------------------------------------------------------------------------------

    def _space(self, space: str | None) -> str:
        chosen = space or self.space_id
        if not chosen:
            raise ValueError("give the space: this API key does not name one")
        return chosen

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver()) if self._resolver else aiohttp.TCPConnector()
            headers = {"x-api-key": self._api_key, "User-Agent": USER_AGENT}
            self._session = aiohttp.ClientSession(headers=headers, connector=connector, auto_decompress=True)
        return self._session

    async def _json(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        *,
        body: Any = None,
        replay: Replay = READ,
    ) -> Any:
        encoded = None if body is None else orjson.dumps(body)
        headers = None if encoded is None else {"Content-Type": "application/json"}
        return await self._send(method, path, params, encoded, headers, replay)

    async def _send(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None,
        body: bytes | None,
        headers: dict[str, str] | None,
        replay: Replay,
    ) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)

        async def attempt() -> Any:
            response = await self._open(method, path, params, body, headers, timeout)
            async with response:
                if response.status >= 400:
                    raise await error_of(response)
                try:
                    raw = await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise Unavailable(f"the answer of joblens was cut: {describe(exc)}") from exc
                return _decoded(raw, response)

        return await self._retrying(attempt, replay)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], replay: Replay) -> T:
        for number in range(self.retries + 1):
            try:
                return await attempt()
            except JoblensError as error:
                if number >= self.retries or not retryable(error, replay):
                    raise
                retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
                await asyncio.sleep(self.backoff.delay_s(number, retry_after))
        raise AssertionError("unreachable")  # the last attempt returned or raised

    async def _open(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None,
        body: bytes | None,
        headers: dict[str, str] | None,
        timeouts: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send one request; the response (its body unread) or `Unreachable`/`Unavailable`. 429 and 503 answers
        raise here (their bodies are small); other statuses are the caller's."""
        try:
            response = await self._http().request(
                method, self._api + path, params=params, data=body, headers=headers, timeout=timeouts
            )
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"cannot reach joblens at {self.base_url} ({describe(exc.os_error)})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"no answer from joblens at {self.base_url} ({describe(exc)})") from exc
        if response.status in (429, 503):
            async with response:
                raise await error_of(response)
        return response


def _decoded(raw: bytes, response: aiohttp.ClientResponse) -> Any:
    if response.status == 204 or not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        request_id = response.headers.get("X-Request-Id")
        raise ServerError("joblens answered something that is not JSON", response.status, request_id) from None


def _stage(stage: StageProgress | float) -> dict[str, Any]:
    if isinstance(stage, StageProgress):
        return {"percent": stage.percent} | ({} if stage.message is None else {"message": stage.message})
    return {"percent": stage}
