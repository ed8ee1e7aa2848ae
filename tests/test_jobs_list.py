"""List Jobs: the list view of a job, newest first, paging at its boundaries, the status filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from dirty_equals import IsStr

from tests.helpers import Tenant, body, create_job, expected_job
from tests.matchers import CONTRACT_EXAMPLE_JOB, ISO_TIME, ULID


async def create_many(client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], count: int) -> list[Any]:
    """``count`` jobs in one request: they share one createdAt."""
    jobs = [{"name": f"job-{i:03d}"} for i in range(count)]
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=jobs, headers=headers)
    created: list[Any] = await body(response, 201)
    return created


async def list_jobs(client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], query: str = "") -> Any:
    return await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs{query}", headers=headers), 200)


def ids(jobs: list[Any]) -> list[str]:
    return [job["id"] for job in jobs]


async def test_empty_space_lists_an_empty_array(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    assert await list_jobs(client, tenant, admin) == []


async def test_list_shows_exactly_the_list_fields(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    created = await create_job(client, tenant, admin, **CONTRACT_EXAMPLE_JOB)
    # No callbackUrl, callbackHeaders or events in a list: those are Get Job's.
    assert await list_jobs(client, tenant, admin) == [
        expected_job(tenant.space_id, **CONTRACT_EXAMPLE_JOB, listed=True, id=created["id"])
    ]
    assert created["id"] == IsStr(regex=ULID)


async def test_newest_created_first(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    created = [await create_job(client, tenant, admin, name=f"job-{i}") for i in range(5)]
    listed = await list_jobs(client, tenant, admin)
    assert ids(listed) == ids(created)[::-1]
    times = [job["createdAt"] for job in listed]
    assert times == sorted(times, reverse=True)


async def test_default_limit_is_50_and_101_is_clamped_to_100(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    created = await create_many(client, tenant, admin, 105)
    default_page = await list_jobs(client, tenant, admin)
    page_100 = await list_jobs(client, tenant, admin, "?limit=100")
    page_101 = await list_jobs(client, tenant, admin, "?limit=101")
    rest = await list_jobs(client, tenant, admin, "?limit=100&offset=100")
    assert (len(default_page), len(page_100), len(page_101), len(rest)) == (50, 100, 100, 5)
    assert page_101 == page_100
    assert ids(default_page) == ids(page_100)[:50]
    assert sorted(ids(page_100) + ids(rest)) == sorted(ids(created))


async def test_offset_at_or_past_the_end_is_an_empty_array(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    await create_many(client, tenant, admin, 3)
    whole = await list_jobs(client, tenant, admin)
    pages = {offset: await list_jobs(client, tenant, admin, f"?offset={offset}") for offset in (2, 3, 4, 1000)}
    assert pages == {2: whole[2:], 3: [], 4: [], 1000: []}
    assert len(whole) == 3


async def test_equal_created_at_pages_concatenate_to_the_single_page(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    older = await create_many(client, tenant, admin, 7)
    newer = await create_many(client, tenant, admin, 7)
    whole = await list_jobs(client, tenant, admin, "?limit=100")
    by_one = [
        job for offset in range(15) for job in await list_jobs(client, tenant, admin, f"?limit=1&offset={offset}")
    ]
    by_three = [
        job for offset in range(0, 15, 3) for job in await list_jobs(client, tenant, admin, f"?limit=3&offset={offset}")
    ]
    assert by_one == whole
    assert by_three == whole
    assert await list_jobs(client, tenant, admin, "?limit=100") == whole
    # Ties are broken deterministically, and never across creation times: the newer request comes first.
    assert sorted(ids(whole[:7])) == sorted(ids(newer))
    assert sorted(ids(whole[7:])) == sorted(ids(older))


async def test_equal_created_at_order_is_the_same_with_a_status_filter(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    await create_many(client, tenant, admin, 6)
    everything = await list_jobs(client, tenant, admin)
    pending = [
        job
        for offset in range(6)
        for job in await list_jobs(client, tenant, admin, f"?status=pending&limit=1&offset={offset}")
    ]
    assert pending == everything


async def test_status_filter_returns_only_that_status(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    pending = [await create_job(client, tenant, admin, name=f"now-{i}") for i in range(3)]
    scheduled = [await create_job(client, tenant, admin, name=f"later-{i}", scheduledFor=later) for i in range(2)]
    listed = {
        status: ids(await list_jobs(client, tenant, admin, f"?status={status}"))
        for status in ("pending", "scheduled", "delivered", "running", "completed", "dead", "killed")
    }
    assert listed == {
        "pending": ids(pending)[::-1],
        "scheduled": ids(scheduled)[::-1],
        "delivered": [],
        "running": [],
        "completed": [],
        "dead": [],
        "killed": [],
    }
    assert ids(await list_jobs(client, tenant, admin)) == ids(pending + scheduled)[::-1]
    paged = await list_jobs(client, tenant, admin, "?status=pending&limit=2&offset=1")
    assert ids(paged) == ids(pending)[::-1][1:3]


async def test_status_filter_follows_a_job_through_its_life(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    """A job is listed under its current status only, however it got there (API.md lifecycle calls)."""
    _, delivered, running, completed, killed = [
        await create_job(client, tenant, admin, name=name)
        for name in ("pending", "delivered", "running", "completed", "killed")
    ]

    async def call(job: Any, action: str, payload: Any = None) -> None:
        await body(await client.post(f"/api/v1/jobs/{job['id']}/{action}", json=payload or {}, headers=admin), 200)

    for job in (delivered, running, completed):
        await call(job, "claim")
    for job in (running, completed):
        await call(job, "ack")
    await call(completed, "complete", {"result": {"ok": True}})
    await call(killed, "kill", {"reason": "not needed"})

    listed = {
        status: [(job["name"], job["status"]) for job in await list_jobs(client, tenant, admin, f"?status={status}")]
        for status in ("scheduled", "pending", "delivered", "running", "completed", "dead", "killed")
    }
    assert listed == {
        "scheduled": [],
        "pending": [("pending", "pending")],
        "delivered": [("delivered", "delivered")],
        "running": [("running", "running")],
        "completed": [("completed", "completed")],
        "dead": [],
        "killed": [("killed", "killed")],
    }
    everything = await list_jobs(client, tenant, admin)
    assert [(job["name"], job["status"]) for job in everything] == [
        ("killed", "killed"),
        ("completed", "completed"),
        ("running", "running"),
        ("delivered", "delivered"),
        ("pending", "pending"),
    ]
    assert everything[1] == {
        **{k: v for k, v in completed.items() if k not in ("callbackUrl", "callbackHeaders")},
        "status": "completed",
        "deliveredAt": IsStr(regex=ISO_TIME),
        "startedAt": IsStr(regex=ISO_TIME),
        "completedAt": IsStr(regex=ISO_TIME),
        "result": {"ok": True},
        "updatedAt": IsStr(regex=ISO_TIME),
    }
