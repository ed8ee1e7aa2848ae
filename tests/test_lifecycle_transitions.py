"""Worker calls: every transition, its events, and the 409 for each wrong state."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant, body, create_job
from tests.matchers import ANY_ISO_TIME


async def call(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, action: str, **payload: Any) -> Any:
    response = await client.post(f"/api/v1/jobs/{job_id}/{action}", json=payload or None, headers=headers)
    return response.status, await response.json()


async def events_of(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> list[tuple[str, Any]]:
    job = await body(await client.get(f"/api/v1/jobs/{job_id}", headers=headers), 200)
    return [(event["type"], event["data"]) for event in job["events"]]


async def to_status(
    client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], status: str, **fields: Any
) -> str:
    """A new job brought to ``status`` through the API."""
    job_id: str = (await create_job(client, tenant, headers, **fields))["id"]
    steps = {
        "pending": [],
        "delivered": ["claim"],
        "running": ["claim", "ack"],
        "completed": ["claim", "ack", "complete"],
        "killed": ["kill"],
    }[status]
    for step in steps:
        code, answer = await call(client, headers, job_id, step)
        assert code == 200, answer
    return job_id


async def test_happy_path_moves_through_every_state_with_events(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job_id = await to_status(client, tenant, admin, "pending")
    code, delivered = await call(client, admin, job_id, "claim")
    assert (code, delivered["status"], delivered["deliveredAt"], delivered["startedAt"]) == (
        200,
        "delivered",
        ANY_ISO_TIME,
        None,
    )
    code, running = await call(client, admin, job_id, "ack")
    assert (code, running["status"], running["startedAt"]) == (200, "running", ANY_ISO_TIME)
    assert (await call(client, admin, job_id, "checkpoint", step=3))[0] == 200
    assert (await call(client, admin, job_id, "event", type="uploaded", data={"bytes": 10}))[0] == 200
    assert (await call(client, admin, job_id, "keepalive"))[0] == 200
    code, done = await call(client, admin, job_id, "complete", result={"url": "s3://out"})
    assert code == 200
    assert done == {
        "id": job_id,
        "spaceId": tenant.space_id,
        "name": "test-job",
        "payload": None,
        "status": "completed",
        "maxRetries": 3,
        "attemptNumber": 0,
        "timeoutSeconds": 300,
        "deliveredAt": ANY_ISO_TIME,
        "startedAt": ANY_ISO_TIME,
        "completedAt": ANY_ISO_TIME,
        "result": {"url": "s3://out"},
        "createdAt": ANY_ISO_TIME,
        "updatedAt": ANY_ISO_TIME,
    }
    assert await events_of(client, admin, job_id) == [
        ("created", None),
        ("delivered", {"attempt": 0}),
        ("started", {"attempt": 0}),
        ("checkpoint", {"step": 3}),
        ("uploaded", {"bytes": 10}),
        ("completed", {"url": "s3://out"}),
    ]
    listed = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs?status=completed", headers=admin), 200)
    assert [job["id"] for job in listed] == [job_id]
    for other in ("pending", "delivered", "running"):
        url = f"/api/v1/spaces/{tenant.space_id}/jobs?status={other}"
        assert await body(await client.get(url, headers=admin), 200) == []


async def test_fail_retries_until_max_retries_then_dead(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job_id = await to_status(client, tenant, admin, "running", maxRetries=1)
    code, retried = await call(client, admin, job_id, "fail", error="disk full")
    assert (code, retried["status"], retried["attemptNumber"], retried["deliveredAt"]) == (200, "pending", 1, None)
    await call(client, admin, job_id, "claim")
    code, dead = await call(client, admin, job_id, "fail", error={"code": 7})
    assert (code, dead["status"], dead["attemptNumber"], dead["completedAt"]) == (200, "dead", 1, ANY_ISO_TIME)
    assert await events_of(client, admin, job_id) == [
        ("created", None),
        ("delivered", {"attempt": 0}),
        ("started", {"attempt": 0}),
        ("retried", {"error": "disk full", "attempt": 1}),
        ("delivered", {"attempt": 1}),
        ("dead", {"error": {"code": 7}, "attempt": 1}),
    ]


@pytest.mark.parametrize("status", ["pending", "delivered", "running"])
async def test_kill_from_each_non_terminal_state(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], status: str
) -> None:
    job_id = await to_status(client, tenant, admin, status)
    code, killed = await call(client, admin, job_id, "kill", reason="operator")
    assert (code, killed["status"]) == (200, "killed")
    assert (await events_of(client, admin, job_id))[-1] == ("killed", {"reason": "operator"})
    poll = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs/poll", json={"count": 50}, headers=admin)
    assert (await body(poll, 200))["jobs"] == []


async def test_kill_a_scheduled_job(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    job = await create_job(client, tenant, admin, scheduledFor="2999-01-01T00:00:00.000Z")
    code, killed = await call(client, admin, job["id"], "kill")
    assert (code, killed["status"]) == (200, "killed")
    assert (await events_of(client, admin, job["id"]))[-1] == ("killed", {"reason": None})


WRONG_STATES = [
    ("claim", "delivered", "Job is delivered; claim requires a pending job"),
    ("claim", "running", "Job is running; claim requires a pending job"),
    ("ack", "pending", "Job is pending; ack requires a delivered job"),
    ("ack", "running", "Job is running; ack requires a delivered job"),
    ("keepalive", "delivered", "Job is delivered; keepalive requires a running job"),
    ("complete", "delivered", "Job is delivered; complete requires a running job"),
    ("complete", "pending", "Job is pending; complete requires a running job"),
    ("fail", "pending", "Job is pending; fail requires a delivered or running job"),
    ("fail", "completed", "Job is completed; fail requires a delivered or running job"),
    ("kill", "completed", "Job is completed; kill requires a non-terminal job"),
    ("kill", "killed", "Job is killed; kill requires a non-terminal job"),
    ("checkpoint", "completed", "Job is completed; checkpoint requires a non-terminal job"),
    ("ack", "killed", "Job is killed; ack requires a delivered job"),
]


@pytest.mark.parametrize(("action", "status", "error"), WRONG_STATES)
async def test_wrong_state_is_409_naming_the_current_status(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], action: str, status: str, error: str
) -> None:
    job_id = await to_status(client, tenant, admin, status)
    payload = {"error": "x"} if action == "fail" else {"a": 1} if action == "checkpoint" else {}
    assert await call(client, admin, job_id, action, **payload) == (409, {"error": error})


@pytest.mark.parametrize(
    ("action", "payload", "error"),
    [
        ("fail", {"error": None}, "error is required: a non-empty string or an object"),
        ("fail", {"error": ""}, "error is required: a non-empty string or an object"),
        ("event", {"type": "completed"}, "type 'completed' is reserved for lifecycle events; choose another type"),
        ("event", {"data": 1}, "type is required: a string of 1 to 100 characters"),
        ("kill", {"reason": 5}, "reason must be a string of at most 10000 characters"),
        ("complete", {"result": 1, "extra": 2}, "extra is not accepted here; allowed: result"),
    ],
)
async def test_bad_bodies_are_400(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], action: str, payload: Any, error: str
) -> None:
    job_id = await to_status(client, tenant, admin, "running")
    assert await call(client, admin, job_id, action, **payload) == (400, {"error": error})


async def test_checkpoint_must_be_an_object(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job_id = await to_status(client, tenant, admin, "running")
    response = await client.post(f"/api/v1/jobs/{job_id}/checkpoint", json=[1], headers=admin)
    assert await body(response, 400) == {"error": "body must be a JSON object (the checkpoint data)"}


@pytest.mark.parametrize("action", ["claim", "ack", "keepalive", "complete", "kill", "checkpoint"])
async def test_unknown_job_is_404(client: TestClient[Any, Any], admin: dict[str, str], action: str) -> None:
    payload = {"a": 1} if action == "checkpoint" else {}
    assert await call(client, admin, "01ARZ3NDEKTSV4RRFFQ69G5FAV", action, **payload) == (
        404,
        {"error": "Job not found"},
    )
