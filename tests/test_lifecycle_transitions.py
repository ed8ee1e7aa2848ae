"""Worker calls: every transition, its events, and the 409 for each wrong state."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body
from tests.lifecycle_helpers import BODIES, STEPS_TO, call, events_of, status_of, to_status
from tests.matchers import ANY_ISO_TIME

NON_TERMINAL = ("scheduled", "pending", "delivered", "running")
# action → (the statuses it is allowed in, how the 409 message names them)
ALLOWED_IN = {
    "claim": (("pending",), "pending"),
    "ack": (("delivered",), "delivered"),
    "keepalive": (("running",), "running"),
    "complete": (("running",), "running"),
    "fail": (("delivered", "running"), "delivered or running"),
    "kill": (NON_TERMINAL, "non-terminal"),
    "checkpoint": (NON_TERMINAL, "non-terminal"),
    "event": (NON_TERMINAL, "non-terminal"),
}
WRONG_STATES = [
    (action, status, f"Job is {status}; {action} requires a {label} job")
    for action, (allowed, label) in ALLOWED_IN.items()
    for status in STEPS_TO
    if status not in allowed
]
DEEP_LIST: Any = []
for _ in range(300):  # deeper than orjson writes back
    DEEP_LIST = [DEEP_LIST]
RIGHT_STATES = [(action, status) for action, (allowed, _) in ALLOWED_IN.items() for status in allowed]


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


@pytest.mark.parametrize("status", NON_TERMINAL)
async def test_kill_from_each_non_terminal_state(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], status: str
) -> None:
    job_id = await to_status(client, tenant, admin, status)
    code, killed = await call(client, admin, job_id, "kill", reason="operator")
    assert (code, killed["status"]) == (200, "killed")
    assert (await events_of(client, admin, job_id))[-1] == ("killed", {"reason": "operator"})
    poll = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs/poll", json={"count": 50}, headers=admin)
    assert (await body(poll, 200))["jobs"] == []


@pytest.mark.parametrize(("action", "status", "error"), WRONG_STATES)
async def test_wrong_state_is_409_naming_the_current_status(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], action: str, status: str, error: str
) -> None:
    job_id = await to_status(client, tenant, admin, status)
    assert await call(client, admin, job_id, action, **BODIES.get(action, {})) == (409, {"error": error})
    # a refused call changes nothing: same status, no event (one per step, after created and maybe scheduled)
    assert await status_of(client, admin, job_id) == status
    assert len(await events_of(client, admin, job_id)) == len(STEPS_TO[status]) + 1 + (status == "scheduled")


@pytest.mark.parametrize(("action", "status"), RIGHT_STATES)
async def test_each_call_is_accepted_in_each_state_it_allows(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], action: str, status: str
) -> None:
    job_id = await to_status(client, tenant, admin, status)
    code, job = await call(client, admin, job_id, action, **BODIES.get(action, {}))
    assert code == 200, job
    assert job["id"] == job_id
    if action in ("checkpoint", "event"):
        assert (job["status"], (await events_of(client, admin, job_id))[-1]) == (
            status,
            ("checkpoint", {"at": 1}) if action == "checkpoint" else ("note", None),
        )


@pytest.mark.parametrize(
    ("action", "payload", "error"),
    [
        ("fail", {"error": None}, "error is required: a non-empty string or a non-empty object"),
        ("fail", {"error": ""}, "error is required: a non-empty string or a non-empty object"),
        ("fail", {"error": {}}, "error is required: a non-empty string or a non-empty object"),
        ("fail", {"error": [[[[]]]]}, "error is required: a non-empty string or a non-empty object"),
        ("fail", {"error": {"e": DEEP_LIST}}, "error is nested too deeply: at most 250 levels"),
        ("complete", {"result": DEEP_LIST}, "result is nested too deeply: at most 251 levels"),
        ("event", {"type": "x", "data": DEEP_LIST}, "data is nested too deeply: at most 251 levels"),
        ("checkpoint", {"deep": DEEP_LIST}, "checkpoint is nested too deeply: at most 251 levels"),
        ("event", {"type": "completed"}, "type 'completed' is reserved for lifecycle events; choose another type"),
        ("event", {"type": "Killed"}, "type 'Killed' is reserved for lifecycle events; choose another type"),
        ("event", {"type": " timeout "}, "type ' timeout ' is reserved for lifecycle events; choose another type"),
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


async def test_results_as_deep_as_an_answer_can_show_are_kept_and_shown(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    deep: Any = []
    for _ in range(250):  # 251 levels: the most a result may have
        deep = [deep]
    job_id = await to_status(client, tenant, admin, "running", payload={"p": deep[0]})
    assert (await call(client, admin, job_id, "complete", result=deep))[0] == 200
    job = await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200)
    assert (job["result"], job["payload"], job["events"][-1]["data"]) == (deep, {"p": deep[0]}, deep)


async def test_checkpoint_must_be_an_object(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job_id = await to_status(client, tenant, admin, "running")
    response = await client.post(f"/api/v1/jobs/{job_id}/checkpoint", json=[1], headers=admin)
    assert await body(response, 400) == {"error": "body must be a JSON object (the checkpoint data)"}


@pytest.mark.parametrize("action", ALLOWED_IN)
async def test_unknown_job_is_404(client: TestClient[Any, Any], admin: dict[str, str], action: str) -> None:
    assert await call(client, admin, "01ARZ3NDEKTSV4RRFFQ69G5FAV", action, **BODIES.get(action, {})) == (
        404,
        {"error": "Job not found"},
    )
