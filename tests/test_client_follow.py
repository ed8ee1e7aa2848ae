"""Following a job's log with the client (the SSE stream): its tail, new lines, status and progress, the end;
exact resume — no gap, no repeat — when the instance is killed or shuts down, while other instances append."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient

from joblens_client import AsyncJoblens, Ended, FollowItem, LogLine, ProgressChanged, StatusChanged
from service.settings import Settings
from tests.client_helpers import ServeProcess, base_url, key_of
from tests.helpers import AppFactory, eventually

FAST = {"stream_poll_interval_s": 0.2, "stream_quiet_period_s": 0.3}


def lines(tag: str, count: int, level: str = "info") -> list[dict[str, Any]]:
    return [{"message": f"{tag} {i}", "level": level} for i in range(count)]


class Follower:
    """A follow running in a task; what it yielded so far."""

    def __init__(self, items: AsyncIterator[FollowItem]) -> None:
        self.items: list[FollowItem] = []
        self.task = asyncio.create_task(self._collect(items))

    async def _collect(self, items: AsyncIterator[FollowItem]) -> None:
        async for item in items:
            self.items.append(item)

    def seqs(self) -> list[int]:
        return [item.seq for item in self.items if isinstance(item, LogLine)]

    async def has(self, count: int) -> None:
        await eventually(lambda: len(self.seqs()) >= count or self.task.done(), f"{count} lines", within_s=30)

    async def done(self) -> list[FollowItem]:
        await asyncio.wait_for(self.task, 30)
        return self.items


@contextlib.asynccontextmanager
async def following(items: AsyncIterator[FollowItem]) -> AsyncIterator[Follower]:
    follower = Follower(items)
    try:
        yield follower
    finally:
        follower.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower.task


async def test_follow_tail_new_lines_status_progress_and_end(make_client: AppFactory, admin: dict[str, str]) -> None:
    server = await make_client(**FAST)
    async with AsyncJoblens(base_url(server), key_of(admin)) as jl:
        job = await jl.create_job("followed")
        await jl.append_logs(job.id, lines("before", 30))
        async with following(jl.follow(job.id, tail=10)) as follower:
            await follower.has(10)
            await jl.claim(job.id)
            await jl.ack(job.id)
            await jl.report_progress(job.id, 50, "half")
            await jl.append_logs(job.id, lines("after", 20, "warn"))
            await follower.has(30)
            await jl.complete(job.id)
            items = await follower.done()
        assert follower.seqs() == list(range(21, 51))
        assert isinstance(items[-1], Ended) and items[-1] == Ended("completed", 50)
        statuses = [item.status for item in items if isinstance(item, StatusChanged)]
        assert statuses[0] == "pending" and statuses[-1] == "completed"  # (delivered, running: if polled meanwhile)
        progress = [item.progress for item in items if isinstance(item, ProgressChanged)]
        assert [(p.percent, p.message) for p in progress] == [(50, "half")]

        # Resuming an ended job's follow after its last line: the server answers 204; the status still comes.
        assert [item async for item in jl.follow(job.id, after=50)] == [Ended("completed", 50)]
        # Filters, and a start after a seq.
        filtered = [item async for item in jl.follow(job.id, after=5, level="warn", q="after")]
        assert [i.seq for i in filtered if isinstance(i, LogLine)] == list(range(31, 51))
        assert filtered[-1] == Ended("completed", 50)


async def test_follow_resumes_exactly_when_its_instance_is_killed_and_when_it_shuts_down(
    make_client: AppFactory, settings: Settings, admin: dict[str, str]
) -> None:
    writer = await make_client(**FAST)  # another instance, which the writers use throughout
    instance = ServeProcess(settings)
    await instance.start()
    try:
        async with AsyncJoblens(base_url(writer), key_of(admin)) as w, AsyncJoblens(instance.url, key_of(admin)) as r:
            job = await w.create_job("restarts")
            await w.append_logs(job.id, lines("a", 100))
            async with following(r.follow(job.id, after=0)) as follower:
                await follower.has(100)
                appending = asyncio.create_task(keep_appending(w, job.id, batches=40))
                await follower.has(300)
                await instance.kill()  # SIGKILL: the connection just ends
                await asyncio.sleep(0.3)  # lines keep arriving while nobody serves this follower
                await instance.start()  # the same port: the follower's reconnections find it again
                await follower.has(1200)
                await instance.stop()  # SIGTERM: a `reconnect` event, then the stream closes
                await instance.start()
                await appending
                await w.claim(job.id)
                await w.kill(job.id, "enough")
                items = await follower.done()
        total = 100 + 40 * 50
        assert follower.seqs() == list(range(1, total + 1))  # every line once, in order, across both restarts
        assert items[-1] == Ended("killed", total)
    finally:
        await instance.kill()


async def keep_appending(jl: AsyncJoblens, job_id: str, batches: int) -> None:
    for number in range(batches):
        await jl.append_logs(job_id, lines(f"batch {number}", 50))
        await asyncio.sleep(0.03)


async def test_follow_through_the_sync_client(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    from joblens_client import Joblens

    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        job = await jl.create_job("sync-follow")
        await jl.append_logs(job.id, lines("x", 5))
        await jl.kill(job.id)

    def follow_to_the_end() -> list[FollowItem]:
        with Joblens(base_url(client), key_of(admin)) as sync:
            return [item for item in sync.follow(job.id, after=0) if not isinstance(item, StatusChanged)]

    items = await asyncio.to_thread(follow_to_the_end)
    assert [i.seq for i in items if isinstance(i, LogLine)] == [1, 2, 3, 4, 5]
    assert items[-1] == Ended("killed", 5)
