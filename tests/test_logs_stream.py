"""Log streams (SSE): exact start points and filters, every acknowledged line once in order under concurrent
writers, resume by Last-Event-ID (also on another instance), the end rule, heartbeats, slow clients, limits,
scopes, isolation and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from service.api.context import LIVE_HUB
from service.settings import Settings
from tests.helpers import AppFactory, Tenant, body, create_job, eventually
from tests.lifecycle_helpers import post
from tests.logs_helpers import append
from tests.matchers import NOT_FOUND, is_now
from tests.servers import joblens_serve

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
FAST = {"stream_poll_interval_s": 0.2, "stream_quiet_period_s": 0.3}


@dataclass
class Event:
    kind: str
    data: Any
    id: int | None


@dataclass
class Sse:
    """A stream being read: its events as they come."""

    response: ClientResponse
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    async def next(self) -> Event:
        kind, data, event_id = "message", "", None
        while True:
            raw = await self.response.content.readline()
            assert raw, "the stream closed"
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    event = Event(kind, orjson.loads(data), event_id)
                    self.events.append(event)
                    return event
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                self.comments.append(value)
            elif name == "event":
                kind = value
            elif name == "data":
                data += value
            elif name == "id":
                event_id = int(value)

    async def until(self, kind: str) -> Event:
        while True:
            event = await self.next()
            if event.kind == kind:
                return event

    async def lines_until(self, count: int) -> list[int]:
        """Read until ``count`` lines have arrived (in logs events); their seqs."""
        while len(self.seqs()) < count:
            await self.next()
        return self.seqs()

    def seqs(self) -> list[int]:
        return [line["seq"] for e in self.events if e.kind == "logs" for line in e.data["logs"]]

    def check_ids(self) -> None:
        for event in self.events:
            if event.kind == "logs":
                assert event.id == event.data["logs"][-1]["seq"]


def stream_path(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/logs/stream"


@contextlib.asynccontextmanager
async def opened(
    client: TestClient[Any, Any], job_id: str, headers: dict[str, str], **params: Any
) -> AsyncIterator[Sse]:
    response = await client.get(stream_path(job_id), params=params, headers=headers)
    try:
        assert response.status == 200, await response.text()
        yield Sse(response)
    finally:
        response.close()


def lines_of(levels: list[str], tag: str = "line") -> list[dict[str, str]]:
    return [{"message": f"{tag} {i}", "level": level} for i, level in enumerate(levels)]


async def test_a_stream_gets_lines_before_and_after_it_connects_once_in_order(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, lines_of(["info"] * 30))
    async with opened(client, job["id"], admin, after=0) as sse:
        assert sse.response.headers["Content-Type"] == "text/event-stream"
        assert sse.response.headers["Cache-Control"] == "no-cache"
        assert sse.response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in sse.response.headers
        first = await sse.response.content.readline()
        assert first == b"retry: 2000\n"
        assert await sse.lines_until(30) == list(range(1, 31))
        await append(client, job["id"], admin, lines_of(["warn"] * 20))
        await append(client, job["id"], admin, lines_of(["info"] * 5))
        assert await sse.lines_until(55) == list(range(1, 56))
        sse.check_ids()
        logs = [e for e in sse.events if e.kind == "logs"]
        page = await body(await client.get(f"/api/v1/jobs/{job['id']}/logs?after=0&limit=500", headers=admin), 200)
        assert [line for e in logs for line in e.data["logs"]] == page["logs"]  # lines exactly as GET /logs
        assert [e.data for e in sse.events if e.kind == "status"] == [{"status": "pending"}]


async def test_tail_last_event_id_and_filters(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    rng = random.Random(7)
    levels = [rng.choice(LEVELS) for _ in range(120)]
    lines = lines_of(levels)
    lines[50]["message"] = "needle in line 50"
    lines[90]["message"] = "another needle here"
    await append(client, job["id"], admin, lines)

    async with opened(client, job["id"], admin, tail=10) as sse:
        assert await sse.lines_until(10) == list(range(111, 121))
    async with opened(client, job["id"], admin) as sse:  # default tail 100
        assert await sse.lines_until(100) == list(range(21, 121))
    headers = {**admin, "Last-Event-ID": "100"}
    async with opened(client, job["id"], headers, after=5) as sse:  # the header wins
        assert await sse.lines_until(20) == list(range(101, 121))
    wanted = [seq for seq, level in enumerate(levels, 1) if level in ("warn", "error") and seq > 30]
    async with opened(client, job["id"], admin, after=30, level="warn,error") as sse:
        assert await sse.lines_until(len(wanted)) == wanted
        await append(client, job["id"], admin, lines_of(["info", "error", "debug", "warn"]))
        assert await sse.lines_until(len(wanted) + 2) == [*wanted, 122, 124]
    async with opened(client, job["id"], admin, after=0, q="needle") as sse:
        assert await sse.lines_until(2) == [51, 91]

    bad = await client.get(stream_path(job["id"]), params={"tail": "501"}, headers=admin)
    assert await body(bad, 400) == {"error": "tail must be at most 500, got 501"}
    bad = await client.get(stream_path(job["id"]), params={"level": "loud"}, headers=admin)
    assert (await body(bad, 400))["error"].startswith("level must be one or more of")
    bad = await client.get(stream_path(job["id"]), headers={**admin, "Last-Event-ID": "x"})
    assert await body(bad, 400) == {"error": "Last-Event-ID must be an integer >= 0, got 'x'"}


async def test_concurrent_writers_on_two_instances_every_stream_sees_each_acknowledged_line_once(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    instances = [await make_client(**FAST), await make_client(**FAST)]
    job = await create_job(instances[0], tenant, admin)
    acknowledged: dict[int, str] = {}
    total = 20_000
    rng = random.Random(20261201)

    async def writer(number: int) -> None:
        client = instances[number % 2]
        while len(acknowledged) < total:
            levels = [rng.choice(LEVELS) for _ in range(rng.randint(300, 700))]
            answer = await append(client, job["id"], admin, lines_of(levels, f"writer {number}"))
            for offset, level in enumerate(levels):
                acknowledged[answer["firstSeq"] + offset] = level

    specs: list[tuple[int, tuple[str, ...]]] = [(0, ()), (1, ()), (0, ("warn", "error")), (1, ("fatal",))]
    async with contextlib.AsyncExitStack() as stack:
        streams = []
        for instance, levels in specs:
            params: dict[str, Any] = {"after": 0}
            if levels:
                params["level"] = ",".join(levels)
            streams.append(await stack.enter_async_context(opened(instances[instance], job["id"], admin, **params)))
        async with asyncio.timeout(120):
            await asyncio.gather(*(writer(n) for n in range(4)))
            last = max(acknowledged)
            assert sorted(acknowledged) == list(range(1, last + 1))
            for sse, (_, levels) in zip(streams, specs, strict=True):
                expected = [seq for seq in sorted(acknowledged) if not levels or acknowledged[seq] in levels]
                assert await sse.lines_until(len(expected)) == expected
                sse.check_ids()
    assert len(acknowledged) >= total


async def test_resume_after_a_disconnect_and_on_another_instance(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    first, second = await make_client(**FAST), await make_client(**FAST)
    job = await create_job(first, tenant, admin)
    for _ in range(3):
        await append(first, job["id"], admin, lines_of(["info"] * 200))
    seen: list[int] = []
    async with opened(first, job["id"], admin, after=0) as sse:
        await sse.until("logs")
        last_id = sse.events[-1].id
        seen += sse.seqs()
    assert last_id is not None
    async with opened(first, job["id"], {**admin, "Last-Event-ID": str(last_id)}) as sse:
        await append(first, job["id"], admin, lines_of(["info"] * 100))
        await sse.lines_until(1)  # and closed mid-way
        last_id = [e.id for e in sse.events if e.kind == "logs"][-1]
        seen += sse.seqs()
    await first.close()  # the instance goes away; the client reconnects to the other one
    assert last_id is not None
    async with opened(second, job["id"], {**admin, "Last-Event-ID": str(last_id)}) as sse:
        await append(second, job["id"], admin, lines_of(["info"] * 100))
        await sse.lines_until(800 - len(seen))
        seen += sse.seqs()
    assert seen == list(range(1, 801))


async def test_the_stream_ends_after_the_quiet_period_and_a_reconnect_is_204(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(stream_poll_interval_s=0.2, stream_quiet_period_s=1.5)
    job = await create_job(client, tenant, admin)
    await post(client, admin, f"/api/v1/spaces/{tenant.space_id}/jobs/poll", {"count": 1})
    await post(client, admin, f"/api/v1/jobs/{job['id']}/ack")
    await append(client, job["id"], admin, lines_of(["info"] * 10))
    async with opened(client, job["id"], admin, after=0) as sse:
        assert await sse.lines_until(10) == list(range(1, 11))
        await post(client, admin, f"/api/v1/jobs/{job['id']}/progress", {"percent": 50, "message": "half"})
        progress = await sse.until("progress")
        assert progress.data == {
            "jobId": job["id"],
            "progress": {"percent": 50, "message": "half"},
            "timestamp": is_now(),
        }
        await post(client, admin, f"/api/v1/jobs/{job['id']}/complete", {"result": 1})
        assert (await sse.until("status")).data == {"status": "completed"}
        await append(client, job["id"], admin, lines_of(["info"] * 5, "late"))  # a late flush, in the quiet period
        end = await sse.until("end")
        assert end.data == {"status": "completed", "lastSeq": 15}
        assert end.id == 15
        assert sse.seqs() == list(range(1, 16))
        assert await sse.response.content.read() == b""  # closed after end
    again = await client.get(stream_path(job["id"]), headers={**admin, "Last-Event-ID": "15"})
    assert again.status == 204
    behind = await client.get(stream_path(job["id"]), headers={**admin, "Last-Event-ID": "12"})
    assert behind.status == 200  # lines left after the cursor: they come, then end
    sse = Sse(behind)
    assert (await sse.until("end")).data == {"status": "completed", "lastSeq": 15}
    assert sse.seqs() == [13, 14, 15]
    behind.close()


async def test_heartbeat_comments(make_client: AppFactory, tenant: Tenant, admin: dict[str, str]) -> None:
    client = await make_client(stream_heartbeat_s=0.2)
    job = await create_job(client, tenant, admin)
    async with opened(client, job["id"], admin, after=0) as sse:
        await sse.until("status")
        line = await sse.response.content.readline()
        assert line == b": ping\n"


async def test_a_slow_client_gets_every_line_in_order_once_it_reads(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(stream_queue_batches=1, **FAST)
    job = await create_job(client, tenant, admin)
    async with opened(client, job["id"], admin, after=0) as sse:
        await sse.until("status")
        payload = "x" * 1500  # enough that the socket buffers fill while the client reads nothing
        for _ in range(12):
            await append(client, job["id"], admin, [{"message": payload}] * 500)
        assert await sse.lines_until(6_000) == list(range(1, 6_001))
        sse.check_ids()
        assert not [e for e in sse.events if e.kind == "error"]


async def test_limits_per_key_and_per_instance(make_client: AppFactory, tenant: Tenant, admin: dict[str, str]) -> None:
    client = await make_client(streams_max=3, streams_per_key_max=2, stream_heartbeat_s=0.1)
    job = await create_job(client, tenant, admin)
    other = await tenant.key("jobs:read")
    async with opened(client, job["id"], admin), opened(client, job["id"], admin):
        refused = await client.get(stream_path(job["id"]), headers=admin)
        assert refused.status == 429
        assert await refused.json() == {"error": "This API key has 2 log streams open on this instance already"}
        async with opened(client, job["id"], other):
            full = await client.get(stream_path(job["id"]), headers=other)
            assert await body(full, 503) == {"error": "Too many log streams on this instance; retry later"}
    # a stream whose client left is closed at its next write (a heartbeat at the latest), and its place given back
    hub = client.app[LIVE_HUB]
    await eventually(lambda: hub.stream_count == 0, "the streams to be closed")
    async with opened(client, job["id"], admin) as sse:
        await sse.until("status")


async def test_scopes_and_isolation(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], make_tenant: Any
) -> None:
    job = await create_job(client, tenant, admin)
    writer = await tenant.key("jobs:log")
    refused = await client.get(stream_path(job["id"]), headers=writer)
    assert await body(refused, 403) == {"error": "Missing required scope: jobs:read"}
    unauthenticated = await client.get(stream_path(job["id"]))
    assert unauthenticated.status == 401
    stranger = await (await make_tenant()).key("jobs:read")
    assert await body(await client.get(stream_path(job["id"]), headers=stranger), 404) == NOT_FOUND
    unknown = await client.get(stream_path("01ARZ3NDEKTSV4RRFFQ69G5FAV"), headers=admin)
    assert await body(unknown, 404) == NOT_FOUND


async def test_shutdown_sends_reconnect(make_client: AppFactory, tenant: Tenant, admin: dict[str, str]) -> None:
    leaving = await make_client(**FAST)
    staying = await make_client(**FAST)
    job = await create_job(leaving, tenant, admin)
    await append(leaving, job["id"], admin, lines_of(["info"] * 10))
    response = await leaving.get(stream_path(job["id"]), params={"after": 0}, headers=admin)
    sse = Sse(response)
    assert await sse.lines_until(10) == list(range(1, 11))
    closing = asyncio.create_task(leaving.server.close())  # the instance shuts down; the client stays
    reconnect = await sse.until("reconnect")
    assert reconnect.data == {"lastSeq": 10}
    assert await response.content.read() == b""
    await closing
    last_id = [e.id for e in sse.events if e.kind == "logs"][-1]
    async with opened(staying, job["id"], {**admin, "Last-Event-ID": str(last_id)}) as resumed:
        await append(staying, job["id"], admin, lines_of(["info"] * 3))
        assert await resumed.lines_until(3) == [11, 12, 13]


async def test_a_stream_open_for_its_longest_ends_with_reconnect_and_resumes_exactly(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(**FAST, stream_max_duration_s=0.5)
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, lines_of(["info"] * 4))
    async with opened(client, job["id"], admin, after=0) as sse:
        assert await sse.lines_until(4) == [1, 2, 3, 4]
        assert (await sse.until("reconnect")).data == {"lastSeq": 4}
        assert await sse.response.content.read() == b""  # then the stream ends
    await append(client, job["id"], admin, lines_of(["info"] * 2))
    async with opened(client, job["id"], {**admin, "Last-Event-ID": "4"}) as resumed:
        assert await resumed.lines_until(2) == [5, 6]


async def test_a_client_that_reads_nothing_is_closed_and_resumes_exactly(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(stream_queue_batches=1, stream_stuck_timeout_s=0.5, **FAST)
    job = await create_job(client, tenant, admin)
    hub = client.app[LIVE_HUB]
    # A tiny receive buffer, and a client that reads nothing: the service's writes stall once the socket is full.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    assert client.port is not None
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {stream_path(job['id'])}?after=0 HTTP/1.1\r\nHost: h\r\nx-api-key: {admin['x-api-key']}\r\n\r\n".encode()
    )
    await writer.drain()
    await eventually(lambda: hub.stream_count == 1, "the stream to open")
    payload = "y" * 1500
    appended = 0
    while hub.stream_count == 1:  # enough lines to fill every buffer on the way; the service closes the stream
        assert appended < 30_000, "the stream of a client that reads nothing was never closed"
        await append(client, job["id"], admin, [{"message": payload}] * 500)
        appended += 500
    received = await asyncio.wait_for(reader.read(), 30)  # what reached the client, then the end of the connection
    writer.close()
    # each write is one whole event (so one chunk of the chunked body): its id follows its event line
    ids = [int(found) for found in re.findall(rb"event: logs\nid: (\d+)\n", received)]
    assert ids == sorted(set(ids)) and ids[-1] < appended  # an in-order prefix: the client fell behind
    async with opened(client, job["id"], {**admin, "Last-Event-ID": str(ids[-1])}) as resumed:
        assert await resumed.lines_until(appended - ids[-1]) == list(range(ids[-1] + 1, appended + 1))


async def test_a_follower_of_a_killed_instance_resumes_on_another_exactly(
    make_client: AppFactory, settings: Settings, tenant: Tenant, admin: dict[str, str]
) -> None:
    survivor = await make_client(**FAST)
    async with joblens_serve(settings, tenant) as doomed, aiohttp.ClientSession() as http:
        job_id = doomed.job_id
        url = f"{doomed.base}/api/v1/jobs/{job_id}/logs/stream?after=0"
        seen: list[int] = []
        async with http.get(url, headers=admin) as response:
            sse = Sse(response)
            await append(survivor, job_id, admin, lines_of(["info"] * 300))
            seen = await sse.lines_until(1)
            doomed.process.kill()  # SIGKILL: no reconnect event, the connection just ends
            await doomed.process.wait()
            with contextlib.suppress(aiohttp.ClientPayloadError, AssertionError, ConnectionError):
                while True:
                    await sse.next()
            seen = sse.seqs()
        await append(survivor, job_id, admin, lines_of(["warn"] * 50))
        last_id = [e.id for e in sse.events if e.kind == "logs"][-1]
        async with opened(survivor, job_id, {**admin, "Last-Event-ID": str(last_id)}) as resumed:
            rest = await resumed.lines_until(350 - len(seen))
        assert seen + rest == list(range(1, 351))
