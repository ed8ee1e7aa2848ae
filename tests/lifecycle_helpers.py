"""Helpers of the lifecycle tests: calling worker endpoints, bringing jobs to a state, waiting for the loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body, create_job

# Background loop settings that make schedules, timeouts and callback retries happen within a test's patience.
FAST_LOOP = {"background_tasks": True, "timeout_loop_interval_s": 0.05, "callback_backoff_s": 0.05}

# How a new job reaches each status through the API (dead: maxRetries=0, then a failure).
STEPS_TO = {
    "scheduled": [],
    "pending": [],
    "delivered": ["claim"],
    "running": ["claim", "ack"],
    "completed": ["claim", "ack", "complete"],
    "dead": ["claim", "fail"],
    "killed": ["kill"],
}
Check = Callable[[], Awaitable[bool]]  # something `wait_for` waits to become true
BODIES: dict[str, dict[str, Any]] = {"fail": {"error": "x"}, "checkpoint": {"at": 1}, "event": {"type": "note"}}


async def call(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, action: str, **payload: Any) -> Any:
    """POST /jobs/:id/<action>; (status, JSON body)."""
    response = await client.post(f"/api/v1/jobs/{job_id}/{action}", json=payload or None, headers=headers)
    return response.status, await response.json()


async def post(client: TestClient[Any, Any], headers: dict[str, str], path: str, payload: Any = None) -> Any:
    """POST that must answer 200; its JSON body."""
    return await body(await client.post(path, json=payload, headers=headers), 200)


async def get_job(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> Any:
    return await body(await client.get(f"/api/v1/jobs/{job_id}", headers=headers), 200)


async def events_of(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> list[tuple[str, Any]]:
    return [(event["type"], event["data"]) for event in (await get_job(client, headers, job_id))["events"]]


async def status_of(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> str:
    return str((await get_job(client, headers, job_id))["status"])


async def to_status(
    client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], status: str, **fields: Any
) -> str:
    """A new job brought to ``status`` through the API."""
    if status == "scheduled":
        fields.setdefault("scheduledFor", "2999-01-01T00:00:00.000Z")
    if status == "dead":
        fields.setdefault("maxRetries", 0)
    job_id: str = (await create_job(client, tenant, headers, **fields))["id"]
    for step in STEPS_TO[status]:
        code, answer = await call(client, headers, job_id, step, **BODIES.get(step, {}))
        assert code == 200, answer
    assert await status_of(client, headers, job_id) == status
    return job_id


def has_status(
    client: TestClient[Any, Any], headers: dict[str, str], job_id: str, *statuses: str
) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the job's status is one of ``statuses``."""

    async def check() -> bool:
        return await status_of(client, headers, job_id) in statuses

    return check


def last_event_is(
    client: TestClient[Any, Any], headers: dict[str, str], job_id: str, kind: str
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await events_of(client, headers, job_id))[-1][0] == kind

    return check
