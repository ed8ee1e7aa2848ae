"""SIGTERM: stop accepting, finish the requests in flight, close the clients, exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp
from elasticsearch import AsyncElasticsearch

from service.settings import Settings
from tests.conftest import Tenant
from tests.servers import free_port


async def test_sigterm_lets_an_in_flight_append_finish(
    settings: Settings, es: AsyncElasticsearch, tenant: Tenant
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "JOBLENS_REDIS_URL": settings.redis_url,
        "JOBLENS_ELASTICSEARCH_URL": settings.elasticsearch_urls[0],
        "JOBLENS_INDEX_PREFIX": settings.index_prefix,
        "JOBLENS_INDEX_REFRESH_INTERVAL_S": "2",  # an append waits for the next refresh: up to 2 s in flight
        "JOBLENS_BACKGROUND_TASKS": "false",
    }
    server = await asyncio.create_subprocess_exec(
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
    base = f"http://127.0.0.1:{port}"
    headers = await tenant.key("jobs:create", "jobs:log", "jobs:read")
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/readyz") as ready:
                        if ready.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the service did not become ready"
                await asyncio.sleep(0.1)
            async with http.post(
                f"{base}/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "j"}, headers=headers
            ) as r:
                job = await r.json()
            lines = [{"message": f"line {i}"} for i in range(50)]
            in_flight = asyncio.create_task(
                http.post(f"{base}/api/v1/jobs/{job['id']}/logs", json=lines, headers=headers)
            )
            await asyncio.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status == 200
            assert await response.json() == {"accepted": 50, "firstSeq": 1, "lastSeq": 50}
        exit_code = await asyncio.wait_for(server.wait(), 30)
        assert server.stderr is not None
        assert exit_code == 0, (await server.stderr.read()).decode()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
