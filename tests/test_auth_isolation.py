"""Space isolation: a key reaches only its own space's jobs. Another space's job is 404 (no existence leak),
another space's path is 403, and lists never mix spaces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory, Tenant, body, create_job
from tests.matchers import NOT_FOUND

TenantFactory = Callable[[], Awaitable[Tenant]]
ALL_SCOPES = ("jobs:create", "jobs:read", "jobs:read:progress", "jobs:worker", "jobs:kill")
OTHER_SPACE = {"error": "This API key belongs to another space"}
NO_LOGS = {"logs": [], "cursor": {"mode": "latest", "oldestSeq": None, "newestSeq": None, "hasMore": False}}

JOB_CALLS: dict[str, tuple[str, str, Any]] = {
    "GET /jobs/:id": ("GET", "/api/v1/jobs/{job}", None),
    "GET /jobs/:id/progress": ("GET", "/api/v1/jobs/{job}/progress", None),
    "POST /jobs/:id/progress": ("POST", "/api/v1/jobs/{job}/progress", {"percent": 99, "message": "intruder"}),
    "GET /jobs/:id/logs": ("GET", "/api/v1/jobs/{job}/logs", None),
    "POST /jobs/:id/logs": ("POST", "/api/v1/jobs/{job}/logs", {"logs": [{"message": "intruder"}]}),
}


async def spaces_with_a_job(
    client: TestClient[Any, Any], make_tenant: TenantFactory, count: int
) -> list[tuple[Tenant, dict[str, str], Any]]:
    """``count`` spaces, each with an all-scopes key and one job."""
    spaces = []
    for _ in range(count):
        tenant = await make_tenant()
        headers = await tenant.key(*ALL_SCOPES)
        spaces.append((tenant, headers, await create_job(client, tenant, headers)))
    return spaces


async def untouched(client: TestClient[Any, Any], headers: dict[str, str], job: Any) -> dict[str, Any]:
    """What the owner sees of a job: detail, progress and logs."""
    detail = await body(await client.get(f"/api/v1/jobs/{job['id']}", headers=headers), 200)
    progress = await body(await client.get(f"/api/v1/jobs/{job['id']}/progress", headers=headers), 200)
    logs = await body(await client.get(f"/api/v1/jobs/{job['id']}/logs", headers=headers), 200)
    return {"detail": detail, "progress": progress, "logs": logs}


@pytest.mark.parametrize("call", JOB_CALLS.values(), ids=JOB_CALLS.keys())
async def test_a_job_of_another_space_is_404_on_every_job_call(
    make_client: AppFactory, make_tenant: TenantFactory, call: tuple[str, str, Any]
) -> None:
    client = await make_client()
    spaces = await spaces_with_a_job(client, make_tenant, 3)
    before = [await untouched(client, headers, job) for _, headers, job in spaces]
    method, path, payload = call

    answers = {}
    for a, (_, headers, _) in enumerate(spaces):
        for b, (_, _, job) in enumerate(spaces):
            if a != b:
                response = await client.request(method, path.format(job=job["id"]), json=payload, headers=headers)
                answers[(a, b)] = (response.status, orjson.loads(await response.read()))

    assert answers == dict.fromkeys(answers, (404, NOT_FOUND))
    assert len(answers) == 6
    after = [await untouched(client, headers, job) for _, headers, job in spaces]
    assert after == before
    assert [state["progress"]["progress"] for state in after] == [None, None, None]
    assert [state["logs"] for state in after] == [NO_LOGS, NO_LOGS, NO_LOGS]


async def test_another_spaces_path_is_403(client: TestClient[Any, Any], make_tenant: TenantFactory) -> None:
    (a, a_headers, _), (b, b_headers, b_job) = await spaces_with_a_job(client, make_tenant, 2)
    unknown_space = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    answers = {}
    for target in (b.space_id, unknown_space):
        listed = await client.get(f"/api/v1/spaces/{target}/jobs", headers=a_headers)
        created = await client.post(f"/api/v1/spaces/{target}/jobs", json={"name": "intruder"}, headers=a_headers)
        answers[target] = [(listed.status, await listed.json()), (created.status, await created.json())]
    assert answers == {
        b.space_id: [(403, OTHER_SPACE), (403, OTHER_SPACE)],
        unknown_space: [(403, OTHER_SPACE), (403, OTHER_SPACE)],
    }
    b_jobs = await body(await client.get(f"/api/v1/spaces/{b.space_id}/jobs", headers=b_headers), 200)
    assert [job["id"] for job in b_jobs] == [b_job["id"]]
    assert await body(await client.get(f"/api/v1/spaces/{a.space_id}/jobs", headers=a_headers), 200) != []


async def test_a_list_shows_only_the_callers_space(client: TestClient[Any, Any], make_tenant: TenantFactory) -> None:
    spaces = await spaces_with_a_job(client, make_tenant, 3)
    for tenant, headers, _ in spaces:
        await body(
            await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "n"}] * 3, headers=headers), 201
        )
    listed = {}
    for tenant, headers, _ in spaces:
        for query in ("", "?status=pending", "?limit=100&offset=0"):
            jobs = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs{query}", headers=headers), 200)
            listed[(tenant.space_id, query)] = (len(jobs), {job["spaceId"] for job in jobs})
    assert listed == {key: (4, {key[0]}) for key in listed}


async def test_a_key_relabelled_with_another_space_is_401(
    client: TestClient[Any, Any], make_tenant: TenantFactory
) -> None:
    """A key names its space; putting another space's id into it must not open that space."""
    (a, a_headers, _), (b, _, b_job) = await spaces_with_a_job(client, make_tenant, 2)
    relabelled = {"x-api-key": a_headers["x-api-key"].replace(a.space_id, b.space_id)}
    answers = [
        (response.status, await response.json())
        for response in (
            await client.get(f"/api/v1/jobs/{b_job['id']}", headers=relabelled),
            await client.get(f"/api/v1/spaces/{b.space_id}/jobs", headers=relabelled),
        )
    ]
    assert answers == [(401, {"error": "Invalid or revoked API key"})] * 2
