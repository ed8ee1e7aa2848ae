"""``joblens serve --workers N``, run as a user runs it (a subprocess): N worker processes answer on one port,
SIGTERM stops every one gracefully (streams get ``reconnect``, exit 0, no process left), a worker that dies is
started again, one that keeps dying makes the supervisor give up, and a failure to start is one line and exit 1.

Which process answered a connection is read from the kernel (the server end of the connection is a socket in
exactly one worker's file table), so the service shows nothing extra for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from dirty_equals import IsStr
from elasticsearch import AsyncElasticsearch

from devstack.ports import free_port
from devstack.processes import pid_alive
from service.server import MAX_RESTARTS
from service.settings import Settings
from tests.helpers import Tenant, eventually, run_joblens
from tests.servers import RedisProcess

# Only bounds on waits (start-up, a restart, a drain); nothing asserts how long anything took.
START_WITHIN_S = 30.0
EXIT_WITHIN_S = 40.0
# Connections opened to see every worker answer: the kernel spreads them by a hash of their addresses, so all 32
# landing on one of two workers has a chance of 2 ** -31.
CONNECTIONS = 32
ESTABLISHED = "01"  # the state column of /proc/net/tcp
# Five restarts, each a process start plus JOBLENS_CONNECT_TIMEOUT_S, and the pauses between them.
GIVE_UP_WITHIN_S = 90.0


@dataclass
class Served:
    """A ``joblens serve`` process (a supervisor, or the one process of ``--workers 1``) and its stderr lines."""

    process: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)  # as the supervisor logged them once all listened

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def children(self) -> list[int]:
        return children_of(self.process.pid)

    async def pid_answering(self, path: str = "/healthz") -> int:
        """Which process answered a request on a new connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 "), head
            return serving_pid(self.port, writer.get_extra_info("sockname")[1], [self.process.pid, *self.children()])
        finally:
            writer.close()

    async def exited(self, within_s: float = EXIT_WITHIN_S) -> int:
        return await asyncio.wait_for(self.process.wait(), within_s)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")"
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def serving_pid(server_port: int, client_port: int, candidates: list[int]) -> int:
    """The process among ``candidates`` holding the server end of the loopback connection from ``client_port``."""
    inode = None
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cells = row.split()
        local, remote = int(cells[1].split(":")[1], 16), int(cells[2].split(":")[1], 16)
        if (local, remote, cells[3]) == (server_port, client_port, ESTABLISHED):
            inode = cells[9]
    assert inode is not None, f"no server end for the connection from port {client_port}"
    holders = [pid for pid in candidates if f"socket:[{inode}]" in open_files(pid)]
    assert len(holders) == 1, holders
    return holders[0]


def open_files(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            links.add(os.readlink(fd))
    return links


def environment_of(pid: int) -> dict[str, str]:
    variables = {}
    for pair in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0"):
        name, _, value = pair.partition("=")
        variables[name] = value
    return variables


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "JOBLENS_REDIS_URL": settings.redis_url,
        "JOBLENS_ELASTICSEARCH_URL": settings.elasticsearch_urls[0],
        "JOBLENS_INDEX_PREFIX": settings.index_prefix,
        "JOBLENS_BACKGROUND_TASKS": "false",
        "JOBLENS_ACCESS_LOG": "false",  # stderr carries only what these tests read
        "JOBLENS_CONNECT_TIMEOUT_S": "1",
        **extra,
    }


@contextlib.asynccontextmanager
async def serving(settings: Settings, workers: int, **extra_env: str) -> AsyncIterator[Served]:
    """``joblens serve --workers N``, every worker listening and the stores connected; killed if still running at
    the end (its workers go with it: the kernel kills them when their supervisor dies)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers)),
        env=serve_env(settings, **extra_env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(process, port)
    reading = asyncio.create_task(_read_lines(process, served.lines))
    try:
        if workers > 1:
            listening = f"with {workers} workers"
            await eventually(lambda: bool(served.logged(listening)), "every worker listening", START_WITHIN_S)
            served.worker_pids = orjson.loads(served.logged(listening)[0])["worker_pids"]
        await _ready(served)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reading


async def _read_lines(process: asyncio.subprocess.Process, into: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:  # read all along: a full pipe would block the workers' writes
        into.append(line.decode().rstrip("\n"))


async def _ready(served: Served) -> None:
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            assert served.process.returncode is None, "\n".join(served.lines)
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{served.port}/readyz") as response:
                    return response.status == 200
            return False

        await eventually(ready, "the service ready", START_WITHIN_S)


@dataclass
class Stream:
    """A live log stream on a connection of its own, its head read, and the pid of the worker serving it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pid: int


async def open_stream(served: Served, job_id: str, headers: dict[str, str]) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    head = [f"GET /api/v1/jobs/{job_id}/logs/stream?after=0 HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    return Stream(reader, writer, serving_pid(served.port, writer.get_extra_info("sockname")[1], served.worker_pids))


async def create_job(served: Served, tenant: Tenant, headers: dict[str, str]) -> Any:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{served.port}/api/v1/spaces/{tenant.space_id}/jobs"
        async with http.post(url, json={"name": "j"}, headers=headers) as response:
            assert response.status == 201
            return (await response.json())["id"]


async def test_two_workers_answer_on_one_port_and_one_runs_the_background_duties(
    settings: Settings, es: AsyncElasticsearch
) -> None:
    async with serving(settings, 2, JOBLENS_BACKGROUND_TASKS="true") as served:
        assert sorted(served.worker_pids) == served.children()
        answering = {await served.pid_answering() for _ in range(CONNECTIONS)}
        assert answering == set(served.worker_pids)
        background = [environment_of(pid)["JOBLENS_BACKGROUND_TASKS"] for pid in served.worker_pids]
        assert background == ["true", "false"]


async def test_sigterm_ends_every_workers_streams_with_reconnect_and_exits_0(
    settings: Settings, es: AsyncElasticsearch, tenant: Tenant
) -> None:
    async with serving(settings, 2) as served:
        headers = await tenant.key("jobs:create", "jobs:read")
        job_id = await create_job(served, tenant, headers)
        streams: list[Stream] = []
        while len({stream.pid for stream in streams}) < len(served.worker_pids):  # until each worker serves one
            assert len(streams) < CONNECTIONS, "one worker got every stream"
            streams.append(await open_stream(served, job_id, headers))

        served.process.send_signal(signal.SIGTERM)
        for stream in streams:
            received = await asyncio.wait_for(stream.reader.read(), EXIT_WITHIN_S)  # to the end of the connection
            stream.writer.close()
            assert b"event: reconnect\n" in received, received
        assert await served.exited() == 0
        assert [pid for pid in served.worker_pids if pid_alive(pid)] == []
        assert len(served.logged("shutting down:")) == 2, served.lines  # each worker drained


async def test_a_killed_worker_is_started_again(settings: Settings, es: AsyncElasticsearch) -> None:
    async with serving(settings, 2) as served:
        first, killed = served.worker_pids
        os.kill(killed, signal.SIGKILL)
        await eventually(lambda: bool(served.logged("worker 1 listening again")), "the restart", START_WITHIN_S)
        now = served.children()
        assert first in now and killed not in now and len(now) == 2
        assert {await served.pid_answering() for _ in range(CONNECTIONS)} == set(now)
        [restarting] = served.logged("exited unexpectedly")
        assert orjson.loads(restarting)["message"] == IsStr(
            regex=rf"worker 1 \(pid {killed}\) exited unexpectedly \(exit status 137\); starting it again in .*s"
        )
        served.process.send_signal(signal.SIGTERM)
        assert await served.exited() == 0


async def test_a_worker_that_keeps_failing_to_start_stops_the_service(
    settings: Settings, es: AsyncElasticsearch, private_redis: RedisProcess
) -> None:
    async with serving(settings, 2, JOBLENS_REDIS_URL=private_redis.url) as served:
        private_redis.stop()  # from now on a worker cannot start
        os.kill(served.worker_pids[1], signal.SIGKILL)
        assert await served.exited(GIVE_UP_WITHIN_S) == 1
    assert [pid for pid in served.worker_pids if pid_alive(pid)] == []
    said = [line for line in served.lines if line.startswith("joblens: ")]
    unreachable = rf"joblens: cannot reach Redis at redis://127\.0\.0\.1:{private_redis.port}/0 \(.*\)"
    gave_up = f"joblens: worker 1 keeps exiting ({MAX_RESTARTS} restarts in a row; last 1)"
    assert said == [*[IsStr(regex=unreachable)] * MAX_RESTARTS, gave_up]  # each failed restart says why once


async def test_a_failure_to_start_is_one_line_and_exit_1() -> None:
    port = free_port()
    env = {"JOBLENS_REDIS_URL": f"redis://127.0.0.1:{port}/0", "JOBLENS_CONNECT_TIMEOUT_S": "1"}
    run = await run_joblens("serve", "--port", str(free_port()), "--workers", "2", env=env)
    line: object = IsStr(regex=rf"joblens: cannot reach Redis at redis://127\.0\.0\.1:{port}/0 \(.*\)\n")
    assert (run.code, run.stdout, run.stderr) == (1, "", line)


async def test_a_port_already_listened_on_is_one_line_and_exit_1(settings: Settings) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = await run_joblens("serve", "--port", str(port), "--workers", "2", env=serve_env(settings))
    line = f"joblens: cannot listen on 127.0.0.1:{port} (Address already in use)\n"
    assert (run.code, run.stdout, run.stderr) == (1, "", line)


async def test_one_worker_is_one_process_as_before(settings: Settings, es: AsyncElasticsearch) -> None:
    async with serving(settings, 1) as served:
        assert served.children() == []
        assert await served.pid_answering() == served.process.pid
        served.process.send_signal(signal.SIGTERM)
        assert await served.exited() == 0
