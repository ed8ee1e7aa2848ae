"""Polling: the oldest available jobs first, name filters and their aliases, and many pollers at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import AppFactory, Tenant, body, create_job
from tests.lifecycle_helpers import post


async def test_concurrent_pollers_never_share_a_job_and_lose_none(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    instances = [await make_client(), await make_client()]
    jobs = [{"name": "batch" if i % 2 else "other"} for i in range(120)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(await instances[0].post(url, json=jobs, headers=admin), 201)

    async def poller(number: int) -> list[str]:
        client = instances[number % 2]
        got: list[str] = []
        while True:
            answer = await post(client, admin, f"{url}/poll", {"count": 1 + number % 7})
            if not answer["jobs"]:
                return got
            assert all(job["status"] == "delivered" for job in answer["jobs"])
            got.extend(job["id"] for job in answer["jobs"])

    results = await asyncio.gather(*(poller(n) for n in range(8)))
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)), "a job was delivered twice"
    assert sorted(claimed) == sorted(job["id"] for job in created)


@pytest.mark.parametrize("names", [None, ["resize"], ["resize", "encode"]])
async def test_as_many_concurrent_polls_as_jobs_each_get_one(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], names: list[str] | None
) -> None:
    """No poll comes back empty while a job is waiting, however many pollers race for the head of the queue."""
    instances = [await make_client(), await make_client()]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(
        await instances[0].post(url, json=[{"name": ("resize", "encode")[i % 2]} for i in range(60)], headers=admin),
        201,
    )
    wanted = [job["id"] for job in created if names is None or job["name"] in names]
    request = {"count": 1, **({"names": names} if names else {})}
    answers = await asyncio.gather(*(post(instances[n % 2], admin, f"{url}/poll", request) for n in range(len(wanted))))
    assert [len(answer["jobs"]) for answer in answers] == [1] * len(wanted)
    assert sorted(answer["jobs"][0]["id"] for answer in answers) == sorted(wanted)


async def test_poll_filters_by_name_aliases_and_takes_the_oldest_first(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    first = await create_job(client, tenant, admin, name="resize")
    await create_job(client, tenant, admin, name="encode")
    third = await create_job(client, tenant, admin, name="resize")
    for alias in ({"name": "resize"}, {"types": ["resize"]}):
        answer = await post(client, admin, f"{url}/poll", {"count": 1, **alias})
        assert [job["id"] for job in answer["jobs"]] == [first["id"] if alias.get("name") else third["id"]]
    answer = await post(client, admin, f"{url}/poll", {"count": 5, "names": ["resize", "encode"]})
    assert [job["name"] for job in answer["jobs"]] == ["encode"]
    bad = await client.post(f"{url}/poll", json={"count": 51}, headers=admin)
    assert await body(bad, 400) == {"error": "count must be an integer between 1 and 50"}


async def test_poll_type_alias_and_several_names_merge_oldest_first(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    ids = [(await create_job(client, tenant, admin, name=name))["id"] for name in ("a", "b", "c", "a", "b")]
    answer = await post(client, admin, f"{url}/poll", {"count": 3, "type": "b"})
    assert [job["id"] for job in answer["jobs"]] == [ids[1], ids[4]]
    answer = await post(client, admin, f"{url}/poll", {"count": 2, "names": ["c", "a"]})
    assert [job["id"] for job in answer["jobs"]] == [ids[0], ids[2]]
    answer = await post(client, admin, f"{url}/poll", {"count": 50})
    assert [job["id"] for job in answer["jobs"]] == [ids[3]]
    assert (await post(client, admin, f"{url}/poll", {"count": 50}))["jobs"] == []
