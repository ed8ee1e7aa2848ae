"""A proxy in front of Elasticsearch for development tooling: it forwards every request unchanged, keeps a copy,
and can hold the requests to one kind of path until told to let them go.

The benchmarks record with it what the service really sends, and replay it byte for byte as their baselines.

A second service process (same code, same settings) is pointed at `RecordingProxy`, which forwards every request
to Elasticsearch unchanged and keeps a copy. One API call made to that process at a time gives exactly the ES
request(s) it caused; the baseline then sends that request (method, path and query string, headers, body)
straight to Elasticsearch. So the baseline mirrors ``LogStore`` by construction, whatever ``LogStore`` becomes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from devstack.ports import LOOPBACK, free_port

# Hop-by-hop and per-connection headers are not part of "the request".
NOT_REPLAYED = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})
PASSED_BACK = ("Content-Type", "Content-Encoding", "X-Elastic-Product", "Warning")


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int


class RecordingProxy:
    """``hold``: requests whose path contains it wait until `release` is set (`held` is set when one arrives), so
    that a test can act while a call of the service is certainly under way."""

    def __init__(self, upstream: str, *, hold: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.records: list[Recorded] = []
        self.hold = hold
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent")
        )
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def take(self) -> list[Recorded]:
        """The records since the last call."""
        taken, self.records = self.records, []
        return taken

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        if self.hold is not None and self.hold in request.path:
            self.held.set()
            await self.release.wait()
        headers = tuple((k, v) for k, v in request.headers.items() if k.lower() not in NOT_REPLAYED)
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=list(headers), data=body or None
        ) as upstream:
            answer = await upstream.read()
            self.records.append(Recorded(request.method, request.path_qs, headers, body, upstream.status))
            kept = {k: upstream.headers[k] for k in PASSED_BACK if k in upstream.headers}
            return web.Response(body=answer, status=upstream.status, headers=kept)
