"""Private, throwaway server processes: dependencies that tests stop or restart, and real ``joblens serve``
processes that tests signal or kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from devstack import elasticsearch
from devstack.paths import load_state, locked, stack_paths
from devstack.ports import free_port
from devstack.processes import pid_alive
from service.settings import Settings

if TYPE_CHECKING:  # tests.helpers imports this module
    from tests.helpers import Tenant
from devstack.proxy import RecordingProxy


def kill_elasticsearch() -> None:
    """SIGKILL the local stack's Elasticsearch (``JOBLENS_STACK_DIR``); ``up`` starts it again on the same ports."""
    paths = stack_paths()
    with locked(paths):
        pid = load_state(paths).pids.elasticsearch
        if elasticsearch.is_ours(pid, paths.es):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


class RedisProcess:
    """A real redis-server on a free loopback port; it restarts on the same port and folder."""

    def __init__(self, workdir: Path, *, durable: bool = False) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make setup installs it)"
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        # durable: every write is fsynced to the append-only file, so a SIGKILL loses nothing acknowledged
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    job_id: str
    headers: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def exit_code(self, timeout_s: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout_s)
        assert self.process.stderr is not None
        assert code == 0, (await self.process.stderr.read()).decode()
        return code

    async def grace_not_waited_out(self) -> None:
        """Once the process has exited: its log says the requests in flight finished within the grace period."""
        assert self.process.returncode is not None and self.process.stderr is not None
        logged = (await self.process.stderr.read()).decode()
        assert "shutting down: 1 requests in flight" in logged, logged
        assert "still running after" not in logged, logged  # what is logged when the grace period runs out


@contextlib.asynccontextmanager
async def held_requests(elasticsearch_url: str, path: str) -> AsyncIterator[RecordingProxy]:
    """A proxy to Elasticsearch that holds every request to ``path`` (``/_bulk``, ``/_search``) until its
    ``release`` is set."""
    proxy = RecordingProxy(elasticsearch_url, hold=path)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def joblens_serve(
    settings: Settings, tenant: Tenant, elasticsearch_url: str | None = None
) -> AsyncIterator[Served]:
    """A real ``joblens serve`` process, ready, with a job to append to and a key for it."""
    port = free_port()
    env = {
        **os.environ,
        "JOBLENS_REDIS_URL": settings.redis_url,
        "JOBLENS_ELASTICSEARCH_URL": elasticsearch_url or settings.elasticsearch_urls[0],
        "JOBLENS_INDEX_PREFIX": settings.index_prefix,
        "JOBLENS_BACKGROUND_TASKS": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    headers = await tenant.key("jobs:create", "jobs:log", "jobs:read")
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                        if ready.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if process.returncode is not None:
                    assert process.stderr is not None
                    output = (await process.stderr.read()).decode()
                    raise AssertionError(f"the service exited during start-up: {output}")
                assert time.monotonic() < deadline, "the service did not become ready"
                await asyncio.sleep(0.1)
            async with http.post(
                f"http://127.0.0.1:{port}/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "j"}, headers=headers
            ) as r:
                job = await r.json()
        yield Served(process, port, job["id"], headers)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
