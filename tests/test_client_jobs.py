"""The client library against a real joblens: jobs, progress, log reads with cursor iteration, the worker calls,
typed errors carrying the API's message; the sync face from threads, from inside a running event loop and from a
plain script."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from dirty_equals import IsStr

from joblens_client import (
    AsyncJoblens,
    BadRequest,
    Conflict,
    Forbidden,
    Job,
    Joblens,
    LogLine,
    NewLogLine,
    NotFound,
    Progress,
    StageProgress,
    Unauthorized,
)
from joblens_client.records import Cursor, Event
from tests.client_helpers import base_url, key_of
from tests.helpers import Tenant, body
from tests.matchers import ANY_ULID, is_now


async def test_jobs_and_progress_round_trip(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        assert jl.space_id == tenant.space_id  # the key names its space: calls that take one default to it
        job = await jl.create_job("resize", {"w": 640}, max_retries=1, timeout_seconds=60)
        raw = await body(await client.get(f"/api/v1/jobs/{job.id}", headers=admin), 200)
        created = {k: v for k, v in raw.items() if k != "events"}  # Create Jobs answers the job without events
        assert job == Job.from_json(created) and job.raw == created
        assert (job.name, job.status, job.payload, job.max_retries, job.timeout_seconds) == (
            "resize",
            "pending",
            {"w": 640},
            1,
            60,
        )
        other = await jl.create_job("encode")

        assert [j.id for j in await jl.list_jobs()] == [other.id, job.id]  # newest first
        assert [j.id for j in await jl.list_jobs(status="pending", limit=1, offset=1)] == [job.id]
        fetched = await jl.get_job(job.id)
        assert fetched.events == [Event(ANY_ULID, job.id, "created", None, job.created_at)]  # type: ignore[arg-type]

        assert await jl.get_progress(job.id) == Progress(job.id, None, None, {}, None)
        await jl.claim(job.id)
        await jl.ack(job.id)
        reported = await jl.report_progress(
            job.id, 40, "resizing", {"download": 100, "scale": StageProgress(20, "1/5")}
        )
        assert reported == Progress(
            job.id,
            40,
            "resizing",
            {"download": StageProgress(100), "scale": StageProgress(20, "1/5")},
            is_now(),  # type: ignore[arg-type]
        )
        assert await jl.get_progress(job.id) == reported


async def test_log_reads_and_cursor_iteration(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        job = await jl.create_job("logs")
        levels = ["info", "warn", "error", "debug"]
        lines = [NewLogLine(f"line {i}", levels[i % 4], source="test", metadata={"i": i}) for i in range(1, 1201)]
        for start in range(0, 1200, 1000):  # an append holds at most 1,000 lines
            await jl.append_logs(job.id, lines[start : start + 1000])

        page = await jl.read_logs(job.id, after=0, limit=3)
        raw = await body(await client.get(f"/api/v1/jobs/{job.id}/logs?after=0&limit=3", headers=admin), 200)
        assert page.lines == [LogLine.from_json(line) for line in raw["logs"]]
        assert page.lines[0] == LogLine(
            ANY_ULID,  # type: ignore[arg-type]
            1,
            "warn",
            "line 1",
            "test",
            {"i": 1},
            IsStr(),  # type: ignore[arg-type]
            IsStr(),  # type: ignore[arg-type]
        )
        assert page.cursor == Cursor("after", 1, 3, True)

        assert [line.seq for line in [x async for x in jl.lines(job.id)]] == list(range(1, 1201))
        assert [line.seq for line in [x async for x in jl.lines(job.id, after=1190)]] == list(range(1191, 1201))
        backwards = [p async for p in jl.pages(job.id, before=1001, limit=400)]
        assert [(p.lines[0].seq, p.lines[-1].seq) for p in backwards] == [(601, 1000), (201, 600), (1, 200)]
        errors = [x.seq async for x in jl.lines(job.id, level=["error", "fatal"], q="line")]
        assert errors == list(range(2, 1201, 4))
        latest = await jl.read_logs(job.id, limit=2)
        assert ([line.seq for line in latest.lines], latest.cursor.mode) == ([1199, 1200], "latest")
        with pytest.raises(ValueError, match="one of after, before and around"):
            [p async for p in jl.pages(job.id, after=1, before=5)]


async def test_errors_are_typed_and_carry_the_api_message(
    client: TestClient[Any, Any], tenant: Tenant, make_tenant: Any, admin: dict[str, str]
) -> None:
    url = base_url(client)
    reader = await tenant.key("jobs:read")
    async with AsyncJoblens(url, key_of(admin)) as jl, AsyncJoblens(url, key_of(reader)) as ro:
        job = await jl.create_job("j")
        with pytest.raises(NotFound) as not_found:
            await jl.get_job("01J00000000000000000000000")
        assert (not_found.value.message, not_found.value.status) == ("Job not found", 404)
        assert str(not_found.value) == "Job not found (HTTP 404)" and not_found.value.request_id
        with pytest.raises(Forbidden, match="Missing required scope: jobs:create"):
            await ro.create_job("j")
        other = await make_tenant()
        with pytest.raises(Forbidden):
            await jl.list_jobs(space=other.space_id)
        with pytest.raises(BadRequest, match="limit"):
            await jl.read_logs(job.id, limit=0)
        with pytest.raises(Conflict, match="pending"):
            await jl.ack(job.id)
    async with AsyncJoblens(url, f"emit_{tenant.space_id}_not-a-real-secret-at-all") as bad:
        with pytest.raises(Unauthorized) as refused:
            await bad.get_job(job.id)
        assert refused.value.status == 401
        assert "not-a-real" not in repr(bad)  # a client never shows its key


async def test_worker_calls(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        first = await jl.create_job("render", max_retries=1)
        await jl.create_job("other")
        (polled,) = await jl.poll(["render"], count=5)
        assert (polled.id, polled.status) == (first.id, "delivered")
        assert (await jl.ack(first.id)).status == "running"
        assert (await jl.keepalive(first.id)).status == "running"
        await jl.checkpoint(first.id, {"frame": 10})
        await jl.event(first.id, "note", {"hello": 1})
        assert (await jl.fail(first.id, "boom")).status == "pending"  # attempt 0 < maxRetries 1: retried
        await jl.claim(first.id)
        await jl.ack(first.id)
        done = await jl.complete(first.id, {"ok": True})
        assert (done.status, done.result, done.attempt_number) == ("completed", {"ok": True}, 1)
        events = [event.type for event in (await jl.get_job(first.id)).events or []]
        assert events == [
            *("created", "delivered", "started", "checkpoint", "note", "retried"),
            *("delivered", "started", "completed"),
        ]
        doomed = await jl.create_job("d", max_retries=0)
        await jl.claim(doomed.id)
        assert (await jl.fail(doomed.id, {"code": 7})).status == "dead"
        assert (await jl.kill((await jl.create_job("k")).id, "no longer needed")).status == "killed"
        assert await jl.poll(["nothing-of-this-name"]) == []


def sync_calls(url: str, api_key: str, count: int) -> list[str]:
    """What a script does with the sync client: plain calls, and iterators."""
    with Joblens(url, api_key) as jl:
        ids = [jl.create_job(f"sync-{i}").id for i in range(count)]
        jl.append_logs(ids[0], [{"message": "hello"}, NewLogLine("world", "warn")])
        assert [line.message for line in jl.lines(ids[0])] == ["hello", "world"]
        assert [job.id for job in jl.list_jobs(limit=100) if job.id in ids] == ids[::-1]
        return ids


async def test_the_sync_client_from_threads_and_inside_a_running_loop(
    client: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    url, api_key = base_url(client), key_of(admin)
    # Several threads at once (the server runs in this test's loop, which keeps running meanwhile).
    results = await asyncio.gather(*(asyncio.to_thread(sync_calls, url, api_key, 3) for _ in range(4)))
    assert len({job_id for ids in results for job_id in ids}) == 12

    # Inside a program that runs a loop of its own: the client's loop is its own, so nothing waits for this one.
    def in_another_loop() -> str:
        async def main() -> str:
            with Joblens(url, api_key) as jl:
                return jl.create_job("from-a-coroutine").status

        return asyncio.run(main())

    assert await asyncio.to_thread(in_another_loop) == "pending"

    # A call from the client's own loop would wait for itself: refused, not a hang.
    jl = await asyncio.to_thread(Joblens, url, api_key)
    try:
        outcome: list[BaseException] = []

        def from_its_own_loop() -> None:
            try:
                jl.get_job("01J00000000000000000000000")
            except BaseException as exc:
                outcome.append(exc)

        jl._loop.loop.call_soon_threadsafe(from_its_own_loop)
        await asyncio.to_thread(threading.Event().wait, 0.2)
        assert [type(exc) for exc in outcome] == [RuntimeError]
    finally:
        await asyncio.to_thread(jl.close)


async def test_the_sync_client_in_a_plain_script(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from joblens_client import Joblens, NotFound
        with Joblens(os.environ["URL"], os.environ["KEY"]) as jl:
            job = jl.create_job("scripted", {"n": 1})
            jl.append_logs(job.id, [{"message": f"line {i}"} for i in range(5)])
            print(job.id, [line.seq for line in jl.lines(job.id)])
            try:
                jl.get_job("01J00000000000000000000000")
            except NotFound as exc:
                print(exc.message)
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env={"URL": base_url(client), "KEY": key_of(admin), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert (process.returncode, stderr) == (0, b"")
    job_id, seqs = stdout.decode().splitlines()[0].split(" ", 1)
    assert (seqs, stdout.decode().splitlines()[1]) == ("[1, 2, 3, 4, 5]", "Job not found")
    assert (await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200))["name"] == "scripted"
