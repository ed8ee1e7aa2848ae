"""Helpers of the client and terminal tests: a real ``joblens serve`` process that can be killed and started again
on the same port (what a client sees when its instance restarts), and the terminal client run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from devstack.ports import free_port
from service.settings import Settings
from tests.helpers import Run, run_joblens

# Streams end soon after a job does, and a killed writer's lease lapses soon: tests of restarts stay short.
FAST_SERVE_ENV = {
    "JOBLENS_STREAM_POLL_INTERVAL_S": "0.2",
    "JOBLENS_STREAM_QUIET_PERIOD_S": "0.3",
    "JOBLENS_LOG_LEASE_S": "2",
}


def base_url(client: TestClient[Any, Any]) -> str:
    """The URL of an in-process test server, as a client library is given it."""
    return str(client.make_url("")).rstrip("/")


@dataclass
class ServeProcess:
    """``joblens serve`` on a port of its own that stays the same across `kill` / `stop` and `start`."""

    settings: Settings
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            **os.environ,
            "JOBLENS_REDIS_URL": self.settings.redis_url,
            "JOBLENS_ELASTICSEARCH_URL": self.settings.elasticsearch_urls[0],
            "JOBLENS_INDEX_PREFIX": self.settings.index_prefix,
            "JOBLENS_BACKGROUND_TASKS": "false",
            **FAST_SERVE_ENV,
            **self.extra_env,
        }
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        self.process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await self._ready()

    async def _ready(self) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.url}/readyz") as ready:
                        if ready.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                assert self.process is not None and self.process.returncode is None, "joblens serve exited"
                assert time.monotonic() < deadline, "joblens serve did not become ready"
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: connections just end, requests in flight are cut."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM: a graceful shutdown (streams get ``reconnect``, requests in flight finish)."""
        await self._end(signal.SIGTERM)

    async def _end(self, how: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(how)
            await asyncio.wait_for(self.process.wait(), 40)
        self.process = None


def terminal_env(url: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of a terminal-client run: where joblens is, its key, and no config file of the
    developer's (a profile there must not change what a test sees)."""
    return {"JOBLENS_URL": url, "JOBLENS_API_KEY": api_key, "JOBLENS_CONFIG": "/nonexistent/joblens.toml", **extra}


async def terminal(url: str, api_key: str, *args: str, timeout_s: float = 60, **extra: str) -> Run:
    return await run_joblens(*args, env=terminal_env(url, api_key, **extra), timeout_s=timeout_s)


def key_of(headers: dict[str, str]) -> str:
    return headers["x-api-key"]
