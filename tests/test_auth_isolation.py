"""Space isolation: a key reaches only its own space's jobs. Another space's job is 404 (no existence leak) and
stays as it was, another space's path is 403, and lists and polls never mix spaces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
import pytest
from aiohttp.test_utils import TestClient
from dirty_equals import AnyThing

from tests.helpers import AppFactory, Tenant, body, create_job
from tests.lifecycle_helpers import STEPS_TO, call, post
from tests.matchers import NOT_FOUND

TenantFactory = Callable[[], Awaitable[Tenant]]
ALL_SCOPES = ("jobs:create", "jobs:read", "jobs:read:progress", "jobs:worker", "jobs:kill")
OTHER_SPACE = {"error": "This API key belongs to another space"}
NO_LOGS = {"logs": [], "cursor": {"mode": "latest", "oldestSeq": None, "newestSeq": None, "hasMore": False}}


class JobCall(NamedTuple):
    method: str
    path: str  # with a {job} placeholder
    json: Any
    state: str = "pending"  # the target job is in a state where its owner's call would succeed


JOB_CALLS = {
    "GET /jobs/:id": JobCall("GET", "/api/v1/jobs/{job}", None),
    "GET /jobs/:id/progress": JobCall("GET", "/api/v1/jobs/{job}/progress", None),
    "POST /jobs/:id/progress": JobCall("POST", "/api/v1/jobs/{job}/progress", {"percent": 99, "message": "intruder"}),
    "GET /jobs/:id/logs": JobCall("GET", "/api/v1/jobs/{job}/logs", None),
    "GET /jobs/:id/logs/stream": JobCall("GET", "/api/v1/jobs/{job}/logs/stream", None),
    "GET /jobs/:id/logs/export": JobCall("GET", "/api/v1/jobs/{job}/logs/export", None),
    "GET /jobs/:id/logs?around": JobCall("GET", "/api/v1/jobs/{job}/logs?around=1", None),
    "POST /jobs/:id/logs": JobCall("POST", "/api/v1/jobs/{job}/logs", {"logs": [{"message": "intruder"}]}),
    "POST /jobs/:id/claim": JobCall("POST", "/api/v1/jobs/{job}/claim", None),
    "POST /jobs/:id/ack": JobCall("POST", "/api/v1/jobs/{job}/ack", None, "delivered"),
    "POST /jobs/:id/checkpoint": JobCall("POST", "/api/v1/jobs/{job}/checkpoint", {"intruder": 1}, "running"),
    "POST /jobs/:id/event": JobCall("POST", "/api/v1/jobs/{job}/event", {"type": "intruder"}, "running"),
    "POST /jobs/:id/keepalive": JobCall("POST", "/api/v1/jobs/{job}/keepalive", None, "running"),
    "POST /jobs/:id/complete": JobCall("POST", "/api/v1/jobs/{job}/complete", {"result": "intruder"}, "running"),
    "POST /jobs/:id/fail": JobCall("POST", "/api/v1/jobs/{job}/fail", {"error": "intruder"}, "running"),
    "POST /jobs/:id/kill": JobCall("POST", "/api/v1/jobs/{job}/kill", {"reason": "intruder"}),
}


async def spaces_with_a_job(
    client: TestClient[Any, Any], make_tenant: TenantFactory, count: int, state: str = "pending"
) -> list[tuple[Tenant, dict[str, str], Any]]:
    """``count`` spaces, each with an all-scopes key and one job, brought to ``state`` by its owner."""
    spaces = []
    for _ in range(count):
        tenant = await make_tenant()
        headers = await tenant.key(*ALL_SCOPES)
        job = await create_job(client, tenant, headers)
        for step in STEPS_TO[state]:
            assert await call(client, headers, job["id"], step) == (200, AnyThing)
        spaces.append((tenant, headers, job))
    return spaces


async def untouched(client: TestClient[Any, Any], headers: dict[str, str], job: Any) -> dict[str, Any]:
    """What the owner sees of a job: detail, progress and logs."""
    detail = await body(await client.get(f"/api/v1/jobs/{job['id']}", headers=headers), 200)
    progress = await body(await client.get(f"/api/v1/jobs/{job['id']}/progress", headers=headers), 200)
    logs = await body(await client.get(f"/api/v1/jobs/{job['id']}/logs", headers=headers), 200)
    return {"detail": detail, "progress": progress, "logs": logs}


@pytest.mark.parametrize("job_call", JOB_CALLS.values(), ids=JOB_CALLS.keys())
async def test_a_job_of_another_space_is_404_on_every_job_call(
    make_client: AppFactory, make_tenant: TenantFactory, job_call: JobCall
) -> None:
    client = await make_client()
    spaces = await spaces_with_a_job(client, make_tenant, 3, job_call.state)
    before = [await untouched(client, headers, job) for _, headers, job in spaces]
    assert [state["detail"]["status"] for state in before] == [job_call.state] * 3

    answers = {}
    for a, (_, headers, _) in enumerate(spaces):
        for b, (_, _, job) in enumerate(spaces):
            if a != b:
                path = job_call.path.format(job=job["id"])
                response = await client.request(job_call.method, path, json=job_call.json, headers=headers)
                answers[(a, b)] = (response.status, orjson.loads(await response.read()))

    assert answers == dict.fromkeys(answers, (404, NOT_FOUND))
    assert len(answers) == 6
    # Detail (status, times, events), progress and logs all as they were.
    after = [await untouched(client, headers, job) for _, headers, job in spaces]
    assert after == before
    assert [state["progress"]["progress"] for state in after] == [None, None, None]
    assert [state["logs"] for state in after] == [NO_LOGS, NO_LOGS, NO_LOGS]


async def test_another_spaces_path_is_403(client: TestClient[Any, Any], make_tenant: TenantFactory) -> None:
    (a, a_headers, _), (b, b_headers, b_job) = await spaces_with_a_job(client, make_tenant, 2)
    unknown_space = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    b_before = await untouched(client, b_headers, b_job)
    answers = {}
    for target in (b.space_id, unknown_space):
        listed = await client.get(f"/api/v1/spaces/{target}/jobs", headers=a_headers)
        created = await client.post(f"/api/v1/spaces/{target}/jobs", json={"name": "intruder"}, headers=a_headers)
        polled = await client.post(f"/api/v1/spaces/{target}/jobs/poll", json={"count": 50}, headers=a_headers)
        searched = await client.get(f"/api/v1/spaces/{target}/logs", params={"q": "secret"}, headers=a_headers)
        answers[target] = [(r.status, await r.json()) for r in (listed, created, polled, searched)]
    assert answers == {
        b.space_id: [(403, OTHER_SPACE)] * 4,
        unknown_space: [(403, OTHER_SPACE)] * 4,
    }
    b_jobs = await body(await client.get(f"/api/v1/spaces/{b.space_id}/jobs", headers=b_headers), 200)
    assert [job["id"] for job in b_jobs] == [b_job["id"]]
    assert await untouched(client, b_headers, b_job) == b_before  # still pending, never delivered
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


async def test_a_space_search_finds_only_the_callers_lines(
    client: TestClient[Any, Any], make_tenant: TenantFactory
) -> None:
    """The same words in every space; each key finds its own space's lines and no other's."""
    spaces = await spaces_with_a_job(client, make_tenant, 3)
    for tenant, headers, job in spaces:
        lines = [{"message": f"secret token of {tenant.space_id} n={n}"} for n in range(3)]
        await body(await client.post(f"/api/v1/jobs/{job['id']}/logs", json={"logs": lines}, headers=headers), 200)
    found = {}
    for tenant, headers, _ in spaces:
        for query in ({"q": "secret token"}, {"q": "n=1"}, {}):
            answer = await body(
                await client.get(f"/api/v1/spaces/{tenant.space_id}/logs", params=query, headers=headers), 200
            )
            found[(tenant.space_id, tuple(query.values()))] = {
                (hit["jobId"], tenant.space_id in hit["message"]) for hit in answer["logs"]
            }
    owners = {tenant.space_id: job["id"] for tenant, _, job in spaces}
    assert found == {key: {(owners[key[0]], True)} for key in found}


async def test_a_poll_claims_only_the_callers_space(client: TestClient[Any, Any], make_tenant: TenantFactory) -> None:
    """Same job names in both spaces; B drains its own queue (also by name) and never sees one of A's jobs."""
    spaces = await spaces_with_a_job(client, make_tenant, 2)
    jobs = []  # per space: its first job and four more of the same name, created in one request
    for tenant, headers, first in spaces:
        more = await client.post(
            f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "test-job"}] * 4, headers=headers
        )
        jobs.append([first, *await body(more, 201)])
    (a, a_headers, _), (b, b_headers, _) = spaces
    a_jobs, b_jobs = jobs
    a_before = [await untouched(client, a_headers, job) for job in a_jobs]
    b_poll = f"/api/v1/spaces/{b.space_id}/jobs/poll"

    by_name = await post(client, b_headers, b_poll, {"count": 2, "names": ["test-job"]})
    rest = await post(client, b_headers, b_poll, {"count": 50})
    drained = await post(client, b_headers, b_poll, {"count": 50, "name": "test-job"})

    claimed = {job["id"]: (job["spaceId"], job["status"]) for job in by_name["jobs"] + rest["jobs"]}
    assert claimed == {job["id"]: (b.space_id, "delivered") for job in b_jobs}
    assert [len(by_name["jobs"]), len(rest["jobs"]), drained] == [2, 3, {"jobs": []}]
    # A's jobs were not touched, and A's own poll still finds every one of them.
    assert [await untouched(client, a_headers, job) for job in a_jobs] == a_before
    a_polled = await post(client, a_headers, f"/api/v1/spaces/{a.space_id}/jobs/poll", {"count": 50})
    assert sorted(job["id"] for job in a_polled["jobs"]) == sorted(job["id"] for job in a_jobs)


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
