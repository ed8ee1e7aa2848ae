"""Job progress: nulls before the first report, the latest report as a whole record, subProgress."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body, create_job
from tests.matchers import NOT_FOUND, is_now


async def report(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], progress: Any) -> Any:
    return await body(await client.post(f"/api/v1/jobs/{job_id}/progress", json=progress, headers=headers), 200)


async def read(client: TestClient[Any, Any], job_id: str, headers: dict[str, str]) -> Any:
    return await body(await client.get(f"/api/v1/jobs/{job_id}/progress", headers=headers), 200)


async def test_progress_is_null_before_the_first_report(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    assert await read(client, job["id"], admin) == {"jobId": job["id"], "progress": None, "timestamp": None}


async def test_reported_progress_is_read_back_whole(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    progress = {
        "percent": 65,
        "message": "Encoding video",
        "subProgress": {
            "download": {"percent": 100, "message": "Source fetched"},
            "transcode": {"percent": 42.5, "message": "Pass 1/2"},
            "upload": {"percent": 0},
        },
    }
    record = await report(client, job["id"], admin, progress)
    assert record == {"jobId": job["id"], "progress": progress, "timestamp": is_now()}
    assert await read(client, job["id"], admin) == record
    progress_reader = await tenant.key("jobs:read:progress")
    assert await read(client, job["id"], progress_reader) == record


async def test_the_latest_report_wins(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    job = await create_job(client, tenant, admin)
    await report(client, job["id"], admin, {"percent": 10, "message": "starting", "subProgress": {"a": {"percent": 1}}})
    latest = await report(client, job["id"], admin, {"percent": 100, "message": "done"})
    assert await read(client, job["id"], admin) == latest
    assert latest == {"jobId": job["id"], "progress": {"percent": 100, "message": "done"}, "timestamp": is_now()}


@pytest.mark.parametrize("percent", [0, 100, 0.5, 99.99])
async def test_percent_bounds_are_accepted(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], percent: float
) -> None:
    job = await create_job(client, tenant, admin)
    record = await report(client, job["id"], admin, {"percent": percent, "message": "m"})
    assert record == {"jobId": job["id"], "progress": {"percent": percent, "message": "m"}, "timestamp": is_now()}


async def test_a_report_updates_the_job(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    job = await create_job(client, tenant, admin)
    record = await report(client, job["id"], admin, {"percent": 5, "message": "m"})
    got = await body(await client.get(f"/api/v1/jobs/{job['id']}", headers=admin), 200)
    assert {k: v for k, v in got.items() if k != "events"} == {**job, "updatedAt": record["timestamp"]}


async def test_progress_of_an_unknown_job_is_404(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    got = await client.get(f"/api/v1/jobs/{unknown}/progress", headers=admin)
    posted = await client.post(f"/api/v1/jobs/{unknown}/progress", json={"percent": 1, "message": "m"}, headers=admin)
    assert [(got.status, await got.json()), (posted.status, await posted.json())] == [
        (404, NOT_FOUND),
        (404, NOT_FOUND),
    ]


@pytest.mark.parametrize("suffix", [":events", ":progress"])
async def test_progress_of_an_existing_id_with_a_key_suffix_is_404(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], suffix: str
) -> None:
    """``<jobId>:events`` names no job: neither read nor report may touch what is stored under that key."""
    job = await create_job(client, tenant, admin)
    await report(client, job["id"], admin, {"percent": 1, "message": "m"})
    path = f"/api/v1/jobs/{job['id']}{suffix}/progress"
    got = await client.get(path, headers=admin)
    posted = await client.post(path, json={"percent": 2, "message": "m"}, headers=admin)
    assert [(got.status, await got.json()), (posted.status, await posted.json())] == [
        (404, NOT_FOUND),
        (404, NOT_FOUND),
    ]
    assert await read(client, job["id"], admin) == {
        "jobId": job["id"],
        "progress": {"percent": 1, "message": "m"},
        "timestamp": is_now(),
    }
