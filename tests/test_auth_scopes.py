"""The scope-by-endpoint matrix: which single scope (or shorthand) admits a key to which call.

Expected answers are derived from API.md, not from the service's own tables: a key whose scopes (after
expanding the shorthands) include an accepted scope passes; any other key gets 403 naming the first accepted
scope and changes nothing. Each grant calls its own job, brought beforehand to the state in which the call
succeeds, so an admitted lifecycle call answers exactly what a worker would get (200), never a 409.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from dirty_equals import AnyThing

from tests.helpers import AppFactory, Tenant, body, create_job
from tests.lifecycle_helpers import post

SINGLE_SCOPES = (
    "jobs:create",
    "jobs:read",
    "jobs:read:progress",
    "jobs:poll",
    "jobs:ack",
    "jobs:progress",
    "jobs:log",
    "jobs:event",
    "jobs:complete",
    "jobs:fail",
    "jobs:kill",
    "jobs:keepalive",
)
WRITE = frozenset(
    {"jobs:ack", "jobs:progress", "jobs:log", "jobs:event", "jobs:complete", "jobs:fail", "jobs:keepalive"}
)
SHORTHANDS = {"jobs:worker": WRITE | {"jobs:read", "jobs:poll"}, "jobs:write": WRITE}


JSON = "application/json"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {space} and {job} placeholders
    accepted: tuple[str, ...]  # in the order API.md names them; the 403 names the first
    success: int
    json: Any = None
    state: str = "pending"  # each grant's job is in this state before the call
    after: str | None = None  # the state an admitted call leaves its job in; None: unchanged


ENDPOINTS = {
    "POST /spaces/:id/jobs": Endpoint("POST", "/api/v1/spaces/{space}/jobs", ("jobs:create",), 201, {"name": "s"}),
    "GET /spaces/:id/jobs": Endpoint("GET", "/api/v1/spaces/{space}/jobs", ("jobs:read",), 200),
    "GET /jobs/:id": Endpoint("GET", "/api/v1/jobs/{job}", ("jobs:read",), 200),
    "GET /jobs/:id/progress": Endpoint("GET", "/api/v1/jobs/{job}/progress", ("jobs:read:progress", "jobs:read"), 200),
    "POST /jobs/:id/progress": Endpoint(
        "POST", "/api/v1/jobs/{job}/progress", ("jobs:progress",), 200, {"percent": 50, "message": "half"}
    ),
    "GET /jobs/:id/logs": Endpoint("GET", "/api/v1/jobs/{job}/logs", ("jobs:read",), 200),
    "GET /jobs/:id/logs/stream": Endpoint("GET", "/api/v1/jobs/{job}/logs/stream", ("jobs:read",), 200),
    "POST /jobs/:id/logs": Endpoint(
        "POST", "/api/v1/jobs/{job}/logs", ("jobs:log",), 200, {"logs": [{"message": "x"}]}
    ),
    "POST /spaces/:id/jobs/poll": Endpoint(
        "POST", "/api/v1/spaces/{space}/jobs/poll", ("jobs:poll",), 200, {"count": 1}, after="delivered"
    ),
    "POST /jobs/:id/claim": Endpoint("POST", "/api/v1/jobs/{job}/claim", ("jobs:poll",), 200, after="delivered"),
    "POST /jobs/:id/ack": Endpoint(
        "POST", "/api/v1/jobs/{job}/ack", ("jobs:ack",), 200, state="delivered", after="running"
    ),
    "POST /jobs/:id/checkpoint": Endpoint(
        "POST", "/api/v1/jobs/{job}/checkpoint", ("jobs:event",), 200, {"step": 1}, state="running"
    ),
    "POST /jobs/:id/event": Endpoint(
        "POST", "/api/v1/jobs/{job}/event", ("jobs:event",), 200, {"type": "note"}, state="running"
    ),
    "POST /jobs/:id/keepalive": Endpoint(
        "POST", "/api/v1/jobs/{job}/keepalive", ("jobs:keepalive",), 200, state="running"
    ),
    "POST /jobs/:id/complete": Endpoint(
        "POST", "/api/v1/jobs/{job}/complete", ("jobs:complete",), 200, {"result": 1}, "running", "completed"
    ),
    "POST /jobs/:id/fail": Endpoint(
        "POST", "/api/v1/jobs/{job}/fail", ("jobs:fail",), 200, {"error": "x"}, "running", "pending"
    ),
    "POST /jobs/:id/kill": Endpoint("POST", "/api/v1/jobs/{job}/kill", ("jobs:kill",), 200, after="killed"),
}


def admits(granted: tuple[str, ...], endpoint: Endpoint) -> bool:
    expanded = {scope for grant in granted for scope in SHORTHANDS.get(grant, {grant})}
    return bool(expanded & set(endpoint.accepted))


async def jobs_in(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], state: str, count: int) -> Any:
    """``count`` new jobs (the only ones of ``tenant``'s space) brought to ``state``: pending, delivered or running."""
    jobs = await body(
        await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "s"}] * count, headers=admin), 201
    )
    if state in ("delivered", "running"):
        polled = await post(client, admin, f"/api/v1/spaces/{tenant.space_id}/jobs/poll", {"count": count})
        assert len(polled["jobs"]) == count
    if state == "running":
        await asyncio.gather(*(post(client, admin, f"/api/v1/jobs/{job['id']}/ack") for job in jobs))
    return jobs


async def statuses(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], jobs: Any) -> Counter[str]:
    listed = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs?limit=100", headers=admin), 200)
    ids = {job["id"] for job in jobs}
    return Counter(job["status"] for job in listed if job["id"] in ids)


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
async def test_each_scope_is_admitted_or_refused_as_the_contract_says(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], endpoint: Endpoint
) -> None:
    client = await make_client(stream_max_duration_s=0.05)  # a stream's answer ends (with `reconnect`) at once
    all_but_accepted = tuple(scope for scope in SINGLE_SCOPES if scope not in endpoint.accepted)
    grants = [(scope,) for scope in (*SINGLE_SCOPES, *SHORTHANDS)] + [all_but_accepted]
    jobs = await jobs_in(client, tenant, admin, endpoint.state, len(grants))
    assert await statuses(client, tenant, admin, jobs) == {endpoint.state: len(grants)}

    answers = {}
    for granted, job in zip(grants, jobs, strict=True):
        headers = await tenant.key(*granted)
        path = endpoint.path.format(space=tenant.space_id, job=job["id"])
        response = await client.request(endpoint.method, path, json=endpoint.json, headers=headers)
        raw = await response.read()
        answers[",".join(granted)] = (response.status, orjson.loads(raw) if response.content_type == JSON else raw)

    refused = (403, {"error": f"Missing required scope: {endpoint.accepted[0]}"})
    assert answers == {
        ",".join(granted): (endpoint.success, AnyThing) if admits(granted, endpoint) else refused for granted in grants
    }
    # A refused call moved nothing; each admitted one moved one job (a poll: the oldest pending one).
    after = [(endpoint.after or endpoint.state) if admits(granted, endpoint) else endpoint.state for granted in grants]
    assert await statuses(client, tenant, admin, jobs) == Counter(after)
    # The matrix is not vacuous: some single scope passes, and the key with every other scope is refused.
    assert any(admits(granted, endpoint) for granted in grants)
    assert not admits(all_but_accepted, endpoint)


def test_the_shorthands_admit_the_calls_the_contract_lists() -> None:
    """API.md, spelled out: jobs:worker is a worker's whole set (poll and read too), jobs:write lacks poll and
    read, and neither holds jobs:create or jobs:kill."""
    admitted = {
        shorthand: sorted(name for name, endpoint in ENDPOINTS.items() if admits((shorthand,), endpoint))
        for shorthand in SHORTHANDS
    }
    writes = [
        "POST /jobs/:id/ack",
        "POST /jobs/:id/checkpoint",
        "POST /jobs/:id/complete",
        "POST /jobs/:id/event",
        "POST /jobs/:id/fail",
        "POST /jobs/:id/keepalive",
        "POST /jobs/:id/logs",
        "POST /jobs/:id/progress",
    ]
    reads = [
        "GET /jobs/:id",
        "GET /jobs/:id/logs",
        "GET /jobs/:id/logs/stream",
        "GET /jobs/:id/progress",
        "GET /spaces/:id/jobs",
    ]
    polls = ["POST /jobs/:id/claim", "POST /spaces/:id/jobs/poll"]
    assert admitted == {"jobs:worker": sorted(writes + reads + polls), "jobs:write": writes}


async def test_a_key_with_several_scopes_is_admitted_by_any_of_them(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    headers = await tenant.key("jobs:read:progress", "jobs:create")
    created = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "n"}, headers=headers)
    progress = await client.get(f"/api/v1/jobs/{job['id']}/progress", headers=headers)
    detail = await client.get(f"/api/v1/jobs/{job['id']}", headers=headers)
    assert [created.status, progress.status, detail.status] == [201, 200, 403]
    assert await body(detail, 403) == {"error": "Missing required scope: jobs:read"}
