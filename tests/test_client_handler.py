"""The logging handler against a real joblens: records become lines (level, source, metadata, time, formatter),
batches by size and by time, a flush at exit, bounded memory with drop-and-count while joblens is down, and a
joblens restart (SIGKILL and SIGTERM) while a worker logs: no acknowledged line lost, none duplicated."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient
from dirty_equals import IsStr

from joblens_client import AsyncJoblens, Joblens, JoblensLogHandler
from service.settings import Settings
from tests.client_helpers import ServeProcess, base_url, key_of
from tests.helpers import eventually
from tests.matchers import ANY_ISO_TIME, ANY_ULID
from tests.servers import held_requests


@contextmanager
def worker_logger(handler: logging.Handler, name: str = "worker") -> Iterator[logging.Logger]:
    """A logger of the test's own that only this handler hears (root's handlers stay out of it)."""
    logger = logging.getLogger(f"tests.{name}")
    logger.setLevel(1)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


async def all_lines(url: str, api_key: str, job_id: str) -> list[dict[str, Any]]:
    async with AsyncJoblens(url, api_key) as jl:
        return [line.raw async for line in jl.lines(job_id)]


async def test_records_become_log_lines(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("handled")
    sync = await asyncio.to_thread(Joblens, url, api_key)
    handler = JoblensLogHandler(job.id, client=sync, extras=("request_id", "user"), flush_interval_s=0.05)
    handler.setFormatter(logging.Formatter("[%(threadName)s] %(message)s"))
    at = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    try:
        with worker_logger(handler) as logger:
            logger.log(5, "below debug")
            logger.debug("debugging %s", "x")
            logger.info("with extras", extra={"request_id": "r-1", "user": {"id": 7, "since": at, "tags": {"a"}}})
            logger.warning("careful")
            try:
                raise KeyError("missing")
            except KeyError:
                logger.exception("failed")
            logger.critical("the end")
            logger.info("é" * 20_000)  # 40,000 bytes: cut to the server's 32 KiB
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "at a time", (), None)
            record.created = at.timestamp()
            logger.handle(record)
        assert await asyncio.to_thread(handler.flush_within, 10)
    finally:
        await asyncio.to_thread(handler.close)
        await asyncio.to_thread(sync.close)

    stored = await all_lines(url, api_key, job.id)

    def line(seq: int, level: str, message: Any, metadata: Any = None, logged_at: Any = ANY_ISO_TIME) -> Any:
        return {
            "id": ANY_ULID,
            "seq": seq,
            "level": level,
            "message": message,
            "source": "tests.worker",
            "metadata": metadata,
            "loggedAt": logged_at,
            "createdAt": ANY_ISO_TIME,
        }

    assert stored == [
        line(1, "trace", "[MainThread] below debug"),
        line(2, "debug", "[MainThread] debugging x"),
        line(
            3,
            "info",
            "[MainThread] with extras",
            {"request_id": "r-1", "user": {"id": 7, "since": "2026-03-04T05:06:07.891Z", "tags": ["a"]}},
        ),
        line(4, "warn", "[MainThread] careful"),
        line(5, "error", IsStr(regex=r"\[MainThread\] failed\nTraceback .*KeyError: 'missing'", regex_flags=16)),
        line(6, "fatal", "[MainThread] the end"),
        line(7, "info", IsStr(regex=r"\[MainThread\] é+ …\[truncated\]")),
        line(8, "info", "[MainThread] at a time", logged_at="2026-03-04T05:06:07.891Z"),
    ]
    assert len(stored[6]["message"].encode()) <= 32 * 1024
    assert handler.stats.sent == 8 and handler.stats.dropped == 0


async def test_batches_by_size_and_by_time(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("batched")
    sync = await asyncio.to_thread(Joblens, url, api_key)
    by_size = JoblensLogHandler(job.id, client=sync, batch_lines=10, flush_interval_s=3600)
    by_time = JoblensLogHandler(job.id, client=sync, batch_lines=10, flush_interval_s=0.2)
    try:
        with worker_logger(by_size, "sized") as logger:
            for number in range(25):
                logger.info("sized %d", number)
            # two full batches leave at once; the last five wait for the interval (an hour) or a flush
            await eventually(lambda: by_size.stats.sent == 20, "two batches of ten")
            assert by_size.stats.buffered == 5
            await asyncio.to_thread(by_size.flush)
            assert (by_size.stats.sent, by_size.stats.buffered) == (25, 0)
        with worker_logger(by_time, "timed") as logger:
            started = time.monotonic()
            for number in range(3):
                logger.info("timed %d", number)
            await eventually(lambda: by_time.stats.sent == 3, "a partial batch, sent once it waited 0.2 s")
            assert time.monotonic() - started >= 0.2
    finally:
        for handler in (by_size, by_time):
            await asyncio.to_thread(handler.close)
        await asyncio.to_thread(sync.close)
    messages = [line["message"] for line in await all_lines(url, api_key, job.id)]
    assert messages == [f"sized {n}" for n in range(25)] + [f"timed {n}" for n in range(3)]


async def test_what_is_logged_before_exit_is_shipped_at_exit(
    client: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("exiting")
    # A worker that never closes its handler: its lines are sent at exit (an hour-long interval: only exit sends).
    script = textwrap.dedent(
        f"""
        import logging
        from joblens_client import JoblensLogHandler
        handler = JoblensLogHandler({job.id!r}, flush_interval_s=3600)
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
        for number in range(3000):
            logging.getLogger("exiting").info("line %d", number)
        """
    )
    env = {"JOBLENS_URL": url.replace("127.0.0.1", "localhost"), "JOBLENS_API_KEY": api_key, "PATH": "/usr/bin:/bin"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode, stderr.decode()) == (0, "")
    # (via "localhost": at exit, names are resolved without the thread pools Python has shut down by then)
    messages = [line["message"] for line in await all_lines(url, api_key, job.id)]
    assert messages == [f"line {n}" for n in range(3000)]


async def test_a_full_queue_drops_and_counts_and_the_log_says_so(settings: Settings, admin: dict[str, str]) -> None:
    instance = ServeProcess(settings)
    await instance.start()
    handler: JoblensLogHandler | None = None
    try:
        async with AsyncJoblens(instance.url, key_of(admin)) as jl:
            job = await jl.create_job("unreachable")
        await instance.kill()
        handler = JoblensLogHandler(
            job.id, url=instance.url, api_key=key_of(admin), batch_lines=50, max_buffered_lines=100
        )
        with worker_logger(handler, "bounded") as logger:
            started = time.monotonic()
            for number in range(1000):
                logger.info("kept %d", number)
            assert time.monotonic() - started < 2  # a worker is never held up: the policy drops (block_s=0)
        assert (handler.stats.buffered, handler.stats.dropped_full, handler.stats.sent) == (100, 900, 0)
        await eventually(lambda: handler is not None and "cannot reach joblens" in (handler.stats.last_error or ""))
        await instance.start()
        assert await asyncio.to_thread(handler.flush_within, 30)
        assert (handler.stats.sent, handler.stats.dropped) == (100, 900)
        stored = await all_lines(instance.url, key_of(admin), job.id)
        notice = "joblens log handler: 900 log records were dropped here (its queue was full)"
        assert [(line["level"], line["source"], line["message"]) for line in stored] == [
            *(("info", "tests.bounded", f"kept {n}") for n in range(100)),
            ("warn", "joblens_client.handler", notice),  # where the gap is: after the last record kept
        ]
    finally:
        if handler is not None:
            await asyncio.to_thread(handler.close)
        await instance.kill()


async def test_a_joblens_restart_while_a_worker_logs_loses_and_repeats_nothing(
    settings: Settings, admin: dict[str, str]
) -> None:
    instance = ServeProcess(settings)
    await instance.start()
    handler: JoblensLogHandler | None = None
    total = 4000
    try:
        async with AsyncJoblens(instance.url, key_of(admin)) as jl:
            job = await jl.create_job("restarted")
        handler = JoblensLogHandler(
            job.id, url=instance.url, api_key=key_of(admin), batch_lines=100, flush_interval_s=0.05, close_timeout_s=60
        )

        def work(logger: logging.Logger) -> None:
            for number in range(total):
                logger.info("record %d", number)
                if number % 20 == 0:
                    time.sleep(0.01)  # about 2 s of steady logging

        with worker_logger(handler, "restarted") as logger:
            working = asyncio.create_task(asyncio.to_thread(work, logger))
            await eventually(lambda: handler is not None and handler.stats.sent >= 500, "lines sent", within_s=30)
            await instance.kill()  # an append may be cut anywhere: before, during or after its lines are stored
            await asyncio.sleep(0.3)
            await instance.start()
            await eventually(lambda: handler is not None and handler.stats.sent >= 2000, "lines sent", within_s=30)
            await instance.stop()  # graceful: what is in flight finishes, new connections are refused
            await instance.start()
            await working
            assert await asyncio.to_thread(handler.flush_within, 60), handler.stats
        assert (handler.stats.sent, handler.stats.dropped) == (total, 0)
        messages = [line["message"] for line in await all_lines(instance.url, key_of(admin), job.id)]
        assert messages == [f"record {n}" for n in range(total)]  # each once, in the order logged
    finally:
        if handler is not None:
            await asyncio.to_thread(handler.close)
        await instance.kill()


async def test_a_kill_while_an_append_is_in_flight_repeats_nothing(settings: Settings, admin: dict[str, str]) -> None:
    """The worst moment: the append's lines reach Elasticsearch, but the instance dies before it acknowledges them.
    The handler sends the batch again with its key: refused while the dead attempt's lease runs, then stored once
    (readers never show what the dead attempt left)."""
    async with held_requests(settings.elasticsearch_urls[0], "/_bulk") as proxy:
        instance = ServeProcess(settings, {"JOBLENS_ELASTICSEARCH_URL": proxy.url})
        await instance.start()
        handler: JoblensLogHandler | None = None
        try:
            async with AsyncJoblens(instance.url, key_of(admin)) as jl:
                job = await jl.create_job("in-flight")
            handler = JoblensLogHandler(job.id, url=instance.url, api_key=key_of(admin), flush_interval_s=0.05)
            with worker_logger(handler, "in_flight") as logger:
                for number in range(10):
                    logger.info("line %d", number)
                await asyncio.wait_for(proxy.held.wait(), 10)  # the batch's bulk is at the proxy: under way
                await instance.kill()
                proxy.release.set()  # it reaches Elasticsearch after all: stored, never acknowledged
                for number in range(10, 20):
                    logger.info("line %d", number)
                await instance.start()
                assert await asyncio.to_thread(handler.flush_within, 30), handler.stats
            assert (handler.stats.sent, handler.stats.dropped) == (20, 0)
            messages = [line["message"] for line in await all_lines(instance.url, key_of(admin), job.id)]
            assert messages == [f"line {n}" for n in range(20)]
        finally:
            if handler is not None:
                await asyncio.to_thread(handler.close)
            await instance.kill()
