"""Create Jobs: one object or an array, defaults, all-or-nothing validation, the created/scheduled events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from dirty_equals import AnyThing

from tests.helpers import Tenant, body, create_job, expected_event, expected_job


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def test_single_object_answers_201_with_the_job_and_its_defaults(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "encode"}, headers=admin)
    created = await body(response, 201)
    assert created == expected_job(tenant.space_id, "encode")
    assert created["updatedAt"] == created["createdAt"]


async def test_get_job_shows_the_created_job_with_its_created_event(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    created = await create_job(client, tenant, admin)
    got = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    assert got == {**created, "events": [expected_event(created, "created")]}


async def test_all_given_fields_are_stored_and_shown(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    fields: dict[str, Any] = {
        "name": "x" * 200,
        "payload": {"url": "s3://bucket/vidéo.mp4", "nested": {"list": [1, 2.5, None, True]}, "empty": {}},
        "maxRetries": 25,
        "timeoutSeconds": 86400,
        "callbackUrl": "https://example.com/webhooks/jobs",
        "callbackHeaders": {"Authorization": "Bearer your-secret", "X-Trace": ""},
    }
    created = await create_job(client, tenant, admin, **fields)
    assert created == expected_job(tenant.space_id, **fields)
    got = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    assert got == {**created, "events": [expected_event(created, "created")]}


async def test_lowest_bounds_are_accepted(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    created = await create_job(client, tenant, admin, name="a", maxRetries=0, timeoutSeconds=1, payload={})
    assert created == expected_job(tenant.space_id, "a", maxRetries=0, timeoutSeconds=1, payload={})


async def test_array_answers_201_with_an_array_in_the_same_order(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    jobs = [{"name": "first"}, {"name": "second", "maxRetries": 0}, {"name": "third", "payload": {"n": 3}}]
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=jobs, headers=admin)
    created = await body(response, 201)
    assert created == [
        expected_job(tenant.space_id, "first"),
        expected_job(tenant.space_id, "second", maxRetries=0),
        expected_job(tenant.space_id, "third", payload={"n": 3}),
    ]
    assert len({job["id"] for job in created}) == 3
    # One request, one creation time: the array is created at once.
    assert len({job["createdAt"] for job in created}) == 1


async def test_array_of_one_answers_an_array(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "only"}], headers=admin)
    assert await body(response, 201) == [expected_job(tenant.space_id, "only")]


async def test_array_with_one_bad_element_stores_nothing(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    jobs = [{"name": "good"}, {"name": "also-good"}, {"name": "bad", "timeoutSeconds": 0}]
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=jobs, headers=admin)
    assert await body(response, 400) == {"error": "[2].timeoutSeconds must be an integer between 1 and 86400"}
    listed = await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs", headers=admin)
    assert await body(listed, 200) == []


async def test_future_scheduled_for_makes_a_scheduled_job_with_created_and_scheduled_events(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    scheduled_for = iso(datetime.now(UTC) + timedelta(hours=1))
    created = await create_job(client, tenant, admin, scheduledFor=scheduled_for)
    assert created == expected_job(tenant.space_id, status="scheduled")
    got = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    # The form of the scheduled time in the event is checked on its own, below.
    assert got == {
        **created,
        "events": [
            expected_event(created, "created"),
            expected_event(created, "scheduled", {"scheduledFor": AnyThing}),
        ],
    }
    assert got["events"][0]["id"] < got["events"][1]["id"]


async def test_the_scheduled_event_gives_the_time_in_iso_form(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    """API.md, Conventions: times are ISO-8601 UTC with milliseconds, event data included."""
    scheduled_for = iso(datetime.now(UTC) + timedelta(days=2))
    created = await create_job(client, tenant, admin, scheduledFor=scheduled_for)
    got = await body(await client.get(f"/api/v1/jobs/{created['id']}", headers=admin), 200)
    assert got["events"][1] == expected_event(created, "scheduled", {"scheduledFor": scheduled_for})


async def test_jobs_land_in_the_callers_space_whatever_the_body_says(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    response = await client.post(
        f"/api/v1/spaces/{tenant.space_id}/jobs",
        json={"name": "n", "spaceId": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        headers=admin,
    )
    # spaceId is not a job field a caller may set: refused, not silently used or ignored.
    assert await body(response, 400) == {
        "error": "spaceId is not a job field; allowed: "
        "callbackHeaders, callbackUrl, maxRetries, name, payload, scheduledFor, timeoutSeconds"
    }
