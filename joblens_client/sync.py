"""`Joblens`, the synchronous face of `AsyncJoblens` for scripts and threads.

It runs an `AsyncJoblens` on a private event loop in a daemon thread of its own and waits for each call. So it
works from plain scripts, from any number of threads at once, inside a program that runs an event loop of its
own (that loop is never touched), and from a logging handler. The one thing it refuses is a call from its own
loop's thread, which would wait for itself forever (`RuntimeError`).

Host names are resolved on that loop without a thread pool (`InlineResolver`): at interpreter exit the pools
refuse new work before ``atexit`` runs, and a logging handler flushing then must still be able to connect.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp.abc import AbstractResolver, ResolveResult

from joblens_client.backoff import Backoff
from joblens_client.client import AsyncJoblens, Levels
from joblens_client.records import (
    Appended,
    FollowItem,
    Job,
    LogLine,
    LogPage,
    NewLogLine,
    Progress,
    SearchPage,
    StageProgress,
)

__all__ = ["Joblens"]

T = TypeVar("T")
STOP_TIMEOUT_S = 5.0


class InlineResolver(AbstractResolver):
    """``getaddrinfo`` called on the loop itself: it blocks only this private loop, and needs no thread pool."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG)
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            ResolveResult(
                hostname=host, host=str(address[0]), port=int(address[1]), family=kind, proto=proto, flags=flags
            )
            for kind, _, proto, _, address in infos
            if kind in (socket.AF_INET, socket.AF_INET6)
        ]

    async def close(self) -> None:
        pass


class LoopThread:
    """An event loop running in a daemon thread (daemon: a program that forgets to close its client still exits)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self.thread.ident:
            coroutine.close()
            raise RuntimeError("a Joblens call from its own event loop's thread would wait for itself")
        if not self.thread.is_alive():
            coroutine.close()
            raise RuntimeError("this Joblens client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt in the caller: the call stops too
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel what still runs (a caller waiting for it gets `CancelledError` rather than waiting forever), then
        stop the loop and its thread."""
        if not self.thread.is_alive():
            return
        if threading.get_ident() == self.thread.ident:
            self.loop.stop()
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(STOP_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STOP_TIMEOUT_S)


async def _cancel_others() -> None:
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


class Joblens:
    """The synchronous joblens client: the methods of `AsyncJoblens`, waiting for their answers; its async
    iterators become plain iterators. Use it as a context manager, or call `close`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        self.aio = AsyncJoblens(
            base_url, api_key, timeout_s=timeout_s, retries=retries, backoff=backoff, resolver=InlineResolver
        )
        self._loop = LoopThread("joblens-client")
        self._closed = False

    @property
    def space_id(self) -> str | None:
        return self.aio.space_id

    @property
    def loop_thread_ident(self) -> int | None:
        """The thread the client's own loop runs in (the logging handler ignores what is logged there)."""
        return self._loop.thread.ident

    def __repr__(self) -> str:
        return f"Joblens({self.aio.base_url!r}, space_id={self.space_id!r})"

    def __enter__(self) -> Joblens:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):  # already stopping
            self._loop.run(self.aio.close())
        self._loop.stop()

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    item = self._loop.run(_next(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            close = getattr(items, "aclose", None)
            if close is not None and self._loop.thread.is_alive():
                self._loop.run(close())

    # jobs and progress

    def create_job(
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
        return self._loop.run(
            self.aio.create_job(
                name,
                payload,
                space=space,
                max_retries=max_retries,
                timeout_seconds=timeout_seconds,
                scheduled_for=scheduled_for,
                callback_url=callback_url,
                callback_headers=callback_headers,
            )
        )

    def create_jobs(self, jobs: Sequence[Mapping[str, Any]], *, space: str | None = None) -> list[Job]:
        return self._loop.run(self.aio.create_jobs(jobs, space=space))

    def list_jobs(
        self,
        *,
        space: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Job]:
        return self._loop.run(self.aio.list_jobs(space=space, status=status, limit=limit, offset=offset))

    def get_job(self, job_id: str) -> Job:
        return self._loop.run(self.aio.get_job(job_id))

    def get_progress(self, job_id: str) -> Progress:
        return self._loop.run(self.aio.get_progress(job_id))

    def report_progress(
        self, job_id: str, percent: float, message: str, stages: Mapping[str, StageProgress | float] | None = None
    ) -> Progress:
        return self._loop.run(self.aio.report_progress(job_id, percent, message, stages))

    # logs

    def read_logs(
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
        return self._loop.run(
            self.aio.read_logs(
                job_id, after=after, before=before, around=around, limit=limit, level=level, q=q, highlight=highlight
            )
        )

    def pages(
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
    ) -> Iterator[LogPage]:
        return self._iterate(
            self.aio.pages(
                job_id, after=after, before=before, around=around, limit=limit, level=level, q=q, highlight=highlight
            )
        )

    def lines(self, job_id: str, *, after: int = 0, level: Levels = None, q: str | None = None) -> Iterator[LogLine]:
        return self._iterate(self.aio.lines(job_id, after=after, level=level, q=q))

    def follow(
        self,
        job_id: str,
        *,
        after: int | None = None,
        tail: int = 100,
        level: Levels = None,
        q: str | None = None,
        stall_timeout_s: float = 45.0,
        give_up_after_s: float = 60.0,
    ) -> Iterator[FollowItem]:
        return self._iterate(
            self.aio.follow(
                job_id,
                after=after,
                tail=tail,
                level=level,
                q=q,
                stall_timeout_s=stall_timeout_s,
                give_up_after_s=give_up_after_s,
            )
        )

    def search_pages(
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
    ) -> Iterator[SearchPage]:
        return self._iterate(
            self.aio.search_pages(
                space,
                q=q,
                level=level,
                name=name,
                since=since,
                until=until,
                limit=limit,
                highlight=highlight,
                cursor=cursor,
            )
        )

    def search(
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
    ) -> Iterator[LogLine]:
        return self._iterate(
            self.aio.search(
                space, q=q, level=level, name=name, since=since, until=until, max_lines=max_lines, highlight=highlight
            )
        )

    def export(
        self,
        job_id: str,
        *,
        format: Literal["ndjson", "text"] = "ndjson",
        level: Levels = None,
        q: str | None = None,
    ) -> Iterator[bytes]:
        return self._iterate(self.aio.export(job_id, format=format, level=level, q=q))

    # workers

    def append_logs(
        self, job_id: str, lines: Iterable[NewLogLine | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Appended:
        return self._loop.run(self.aio.append_logs(job_id, list(lines), idempotency_key=idempotency_key))

    def append_logs_body(self, job_id: str, body: bytes, idempotency_key: str) -> Appended:
        return self._loop.run(self.aio.append_logs_body(job_id, body, idempotency_key))

    def poll(self, names: Sequence[str] | None = None, *, count: int = 1, space: str | None = None) -> list[Job]:
        return self._loop.run(self.aio.poll(names, count=count, space=space))

    def claim(self, job_id: str) -> Job:
        return self._loop.run(self.aio.claim(job_id))

    def ack(self, job_id: str) -> Job:
        return self._loop.run(self.aio.ack(job_id))

    def keepalive(self, job_id: str) -> Job:
        return self._loop.run(self.aio.keepalive(job_id))

    def checkpoint(self, job_id: str, data: Mapping[str, Any]) -> Job:
        return self._loop.run(self.aio.checkpoint(job_id, data))

    def event(self, job_id: str, type: str, data: Any = None) -> Job:
        return self._loop.run(self.aio.event(job_id, type, data))

    def complete(self, job_id: str, result: Any = None) -> Job:
        return self._loop.run(self.aio.complete(job_id, result))

    def fail(self, job_id: str, error: str | Mapping[str, Any]) -> Job:
        return self._loop.run(self.aio.fail(job_id, error))

    def kill(self, job_id: str, reason: str | None = None) -> Job:
        return self._loop.run(self.aio.kill(job_id, reason))
