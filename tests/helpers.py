"""Helpers shared by the tests: calling the API, minting keys, and the expected bodies of whole answers.

Fixtures live in ``conftest.py``; everything a test imports lives here.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from service.stores.redis_api_keys import ApiKeyStore
from tests.matchers import ANY_ULID, is_now
from tests.servers import RedisProcess

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
RedisServerFactory = Callable[..., RedisProcess]  # make_redis_server(durable=False)


@dataclass
class Tenant:
    """A space with a way to mint keys for it."""

    space_id: str
    store: ApiKeyStore

    async def key(self, *scopes: str) -> dict[str, str]:
        api_key, _ = await self.store.create_key(self.space_id, scopes, "test")
        return {"x-api-key": api_key}


async def body(response: ClientResponse, status: int) -> Any:
    """The JSON body of a response that must have ``status``; the assertion shows the body otherwise."""
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def create_job(client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], **fields: Any) -> Any:
    job = {"name": "test-job", **fields}
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=job, headers=headers)
    return await body(response, 201)


async def raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client library would send; the answer's status and body (HTTP/1.1, Connection: close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def expected_job(
    space_id: str,
    name: str = "test-job",
    *,
    listed: bool = False,
    events: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The whole body of a job just created with ``fields`` (create fields, and answer fields such as ``id`` or
    ``status``) as Create Jobs and Get Job show it: the contract's fields, the defaults, the callback fields.
    ``listed``: as List Jobs shows it (no callback fields); ``events``: with Get Job's events."""
    created_at = is_now()
    job: dict[str, Any] = {
        "id": ANY_ULID,
        "spaceId": space_id,
        "name": name,
        "payload": None,
        "status": "pending",
        "maxRetries": 3,
        "attemptNumber": 0,
        "timeoutSeconds": 300,
        "callbackUrl": None,
        "callbackHeaders": None,
        "deliveredAt": None,
        "startedAt": None,
        "completedAt": None,
        "result": None,
        "createdAt": created_at,
        "updatedAt": created_at,
        **fields,
    }
    if listed:
        del job["callbackUrl"], job["callbackHeaders"]
    if events is not None:
        job["events"] = events
    return job


def expected_event(job: dict[str, Any], kind: str, data: Any = None) -> dict[str, Any]:
    """One of Get Job's events, recorded when ``job`` (an answered body) was created."""
    return {
        "id": ANY_ULID,
        "jobId": job["id"],
        "spaceId": job["spaceId"],
        "type": kind,
        "data": data,
        "createdAt": job["createdAt"],
    }


async def metric_value(client: TestClient[Any, Any], name: str) -> float:
    """The value of an unlabelled metric on the instance's `/metrics` page."""
    response = await client.get("/metrics")
    assert response.status == 200
    [line] = [line for line in (await response.text()).splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], what: str = "the condition", within_s: float = 10.0
) -> None:
    """Wait until ``check()`` holds (it may be async), failing after ``within_s``: never a fixed sleep."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # checks may be requests: a gentle pace keeps them under the rate limit


JOBLENS = Path(sys.executable).with_name("joblens")  # the console script installed beside the interpreter


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def run_joblens(*args: str, env: dict[str, str], timeout_s: float = 30) -> Run:
    """The ``joblens`` command as a user runs it, in a subprocess with ``env`` added to this environment."""
    process = await asyncio.create_subprocess_exec(
        JOBLENS,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())
