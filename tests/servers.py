"""Private, throwaway server processes for tests that stop or restart a dependency, and a proxy that holds
Elasticsearch requests for tests that must act while one is under way."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from devstack import elasticsearch
from devstack.paths import load_state, locked, stack_paths
from devstack.ports import free_port
from devstack.processes import pid_alive


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


class HoldingProxy:
    """Forwards every request to Elasticsearch, but holds each ``_bulk`` until `release` is set: a test can then
    act while an append is certainly under way in its handler (between its bulk and the answer)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.bulk_arrived = asyncio.Event()
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HoldingProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        if "/_bulk" in request.path:
            self.bulk_arrived.set()
            await self.release.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            kept = ("Content-Type", "Content-Encoding", "X-Elastic-Product")
            passed = {k: upstream.headers[k] for k in kept if k in upstream.headers}
            return web.Response(body=await upstream.read(), status=upstream.status, headers=passed)
