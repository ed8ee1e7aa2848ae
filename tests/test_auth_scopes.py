"""The scope-by-endpoint matrix: which single scope (or shorthand) admits a key to which call.

Expected answers are derived from API.md, not from the service's own tables: a key whose scopes (after
expanding the shorthands) include an accepted scope passes; any other key gets 403 naming the first accepted
scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from dirty_equals import AnyThing

from tests.conftest import AppFactory, Tenant, body, create_job

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


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {space} and {job} placeholders
    accepted: tuple[str, ...]  # in the order API.md names them; the 403 names the first
    success: int
    json: Any = None


ENDPOINTS = {
    "POST /spaces/:id/jobs": Endpoint("POST", "/api/v1/spaces/{space}/jobs", ("jobs:create",), 201, {"name": "s"}),
    "GET /spaces/:id/jobs": Endpoint("GET", "/api/v1/spaces/{space}/jobs", ("jobs:read",), 200),
    "GET /jobs/:id": Endpoint("GET", "/api/v1/jobs/{job}", ("jobs:read",), 200),
    "GET /jobs/:id/progress": Endpoint("GET", "/api/v1/jobs/{job}/progress", ("jobs:read:progress", "jobs:read"), 200),
    "POST /jobs/:id/progress": Endpoint(
        "POST", "/api/v1/jobs/{job}/progress", ("jobs:progress",), 200, {"percent": 50, "message": "half"}
    ),
    "GET /jobs/:id/logs": Endpoint("GET", "/api/v1/jobs/{job}/logs", ("jobs:read",), 200),
    "POST /jobs/:id/logs": Endpoint(
        "POST", "/api/v1/jobs/{job}/logs", ("jobs:log",), 200, {"logs": [{"message": "x"}]}
    ),
}


def admits(granted: tuple[str, ...], endpoint: Endpoint) -> bool:
    expanded = {scope for grant in granted for scope in SHORTHANDS.get(grant, {grant})}
    return bool(expanded & set(endpoint.accepted))


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
async def test_each_scope_is_admitted_or_refused_as_the_contract_says(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], endpoint: Endpoint
) -> None:
    # Log writes wait for an Elasticsearch refresh: keep it short.
    client = await make_client(index_refresh_interval_s=0.05)
    job = await create_job(client, tenant, admin)
    path = endpoint.path.format(space=tenant.space_id, job=job["id"])
    all_but_accepted = tuple(scope for scope in SINGLE_SCOPES if scope not in endpoint.accepted)
    grants = [(scope,) for scope in (*SINGLE_SCOPES, *SHORTHANDS)] + [all_but_accepted]

    answers = {}
    for granted in grants:
        headers = await tenant.key(*granted)
        response = await client.request(endpoint.method, path, json=endpoint.json, headers=headers)
        answers[",".join(granted)] = (response.status, orjson.loads(await response.read()))

    refused = (403, {"error": f"Missing required scope: {endpoint.accepted[0]}"})
    assert answers == {
        ",".join(granted): (endpoint.success, AnyThing) if admits(granted, endpoint) else refused for granted in grants
    }
    # The matrix is not vacuous: some single scope passes, and the key with every other scope is refused.
    assert any(admits(granted, endpoint) for granted in grants)
    assert not admits(all_but_accepted, endpoint)


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
