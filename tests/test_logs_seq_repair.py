"""A seq counter that fell behind the index (Redis lost its latest writes) never costs an acknowledged line."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.stores.keyspace import SpaceKeys
from tests.conftest import Tenant, body, create_job
from tests.logs_helpers import append, page, seqs

REPAIRED = {"error": "The log sequence was behind the stored lines and has been repaired; retry"}


@pytest.mark.parametrize(("counter_after_loss", "clashing"), [(2, 4), (0, 2)])
async def test_an_append_onto_stored_seqs_is_refused_and_the_counter_repaired(
    client: TestClient[Any, Any],
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    counter_after_loss: int,
    clashing: int,
) -> None:
    job_id = (await create_job(client, tenant, admin))["id"]
    await append(client, job_id, admin, [{"message": f"kept {n}"} for n in range(1, 6)])
    # What Redis looks like after losing its last writes (no fsync before a crash, a lagging replica promoted).
    await redis.set(SpaceKeys(tenant.space_id).log_seq(job_id), counter_after_loss)

    url = f"/api/v1/jobs/{job_id}/logs"
    clash = await client.post(url, json=[{"message": "clash"}] * clashing, headers=admin)
    assert await body(clash, 503) == REPAIRED
    everything = await page(client, job_id, admin, after=0, limit=500)
    assert [(line["seq"], line["message"]) for line in everything["logs"]] == [(n, f"kept {n}") for n in range(1, 6)]

    retried = await append(client, job_id, admin, [{"message": "new 1"}, {"message": "new 2"}])
    assert retried["firstSeq"] > 5
    tail = await page(client, job_id, admin, after=5)
    assert [line["message"] for line in tail["logs"]] == ["new 1", "new 2"]
    assert seqs(tail) == [retried["firstSeq"], retried["lastSeq"]]
    assert [line["message"] for line in (await page(client, job_id, admin, after=0, limit=500))["logs"]] == [
        *(f"kept {n}" for n in range(1, 6)),
        "new 1",
        "new 2",
    ]
