"""Get Job: the detailed view with callback fields and events; 404 for any id that is not a job of the space."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body, create_job, expected_event, expected_job
from tests.matchers import CONTRACT_EXAMPLE_JOB, NOT_FOUND


async def test_get_job_answers_the_whole_detailed_job(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    created = await create_job(client, tenant, admin, **CONTRACT_EXAMPLE_JOB)
    got = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    assert got == expected_job(
        tenant.space_id, **CONTRACT_EXAMPLE_JOB, id=created["id"], events=[expected_event(created, "created")]
    )


async def test_a_read_only_key_sees_the_same_job(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    created = await create_job(client, tenant, admin)
    reader = await tenant.key("jobs:read")
    by_admin = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    by_reader = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=reader), 200)
    assert by_reader == by_admin


async def test_well_formed_unknown_id_is_404(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    response = await client.get("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=admin)
    assert await body(response, 404) == NOT_FOUND


GARBAGE_IDS = [
    "x",
    "0",
    "not-a-job",
    "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25 characters
    "01ARZ3NDEKTSV4RRFFQ69G5FAVX",  # 27 characters
    "01arz3ndektsv4rrffq69g5fav",  # lower case
    "%7B%7D",  # {}
    "*",
    "a" * 2000,
    "%C3%A9t%C3%A9",  # non-ASCII
]


@pytest.mark.parametrize("job_id", GARBAGE_IDS, ids=lambda job_id: job_id[:30])
async def test_garbage_ids_are_404(client: TestClient[Any, Any], admin: dict[str, str], job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}", headers=admin)
    assert await body(response, 404) == NOT_FOUND


@pytest.mark.parametrize("suffix", [":events", ":progress"])
async def test_an_existing_id_with_a_key_suffix_is_404_not_another_record(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], suffix: str
) -> None:
    """An id is not a Redis key fragment: ``<jobId>:events`` names no job, whatever is stored under that key."""
    created = await create_job(client, tenant, admin)
    await body(
        await client.post(f"/api/v1/jobs/{created['id']}/progress", json={"percent": 1, "message": "m"}, headers=admin),
        200,
    )
    response = await client.get(f"/api/v1/jobs/{created['id']}{suffix}", headers=admin)
    assert await body(response, 404) == NOT_FOUND
