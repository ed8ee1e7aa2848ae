"""A seq counter that fell behind the index (Redis lost its latest writes) never costs an acknowledged line."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import elastic_transport
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.context import LOGS
from service.stores.keyspace import SpaceKeys
from tests.helpers import Tenant, body, create_job
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


def fail_once(store: Any, method: str) -> None:
    """Fault injection: the store's next ``method`` call meets a dropped connection (Elasticsearch itself is
    real; only the moment of the failure is chosen)."""
    real = getattr(store, method)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        setattr(store, method, real)
        raise elastic_transport.ConnectionError("connection reset (injected)")

    setattr(store, method, failing)


async def _job_with_older_lines(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], redis: Redis
) -> str:
    job_id: str = (await create_job(client, tenant, admin))["id"]
    await append(client, job_id, admin, [{"message": f"kept {n}"} for n in range(1, 6)])
    await redis.set(SpaceKeys(tenant.space_id).log_seq(job_id), 0)  # Redis lost its latest writes
    return job_id


async def _shown(client: TestClient[Any, Any], job_id: str, admin: dict[str, str]) -> list[tuple[int, str]]:
    return [(line["seq"], line["message"]) for line in (await page(client, job_id, admin, after=0, limit=500))["logs"]]


KEPT = [(n, f"kept {n}") for n in range(1, 6)]


@pytest.mark.parametrize("failing", ["_not_ours", "delete_lines"])
async def test_a_failure_while_repairing_never_costs_the_older_lines(
    make_client: Any, tenant: Tenant, admin: dict[str, str], redis: Redis, failing: str
) -> None:
    client = await make_client(log_lease_s=1.0)
    job_id = await _job_with_older_lines(client, tenant, admin, redis)
    fail_once(client.app[LOGS]._lines, failing)
    clash = await client.post(f"/api/v1/jobs/{job_id}/logs", json=[{"message": "clash"}] * 7, headers=admin)
    assert clash.status == 503
    await asyncio.sleep(1.2)  # past the lease: nothing left in flight decides what readers see
    shown = await _shown(client, job_id, admin)
    assert shown[:5] == KEPT
    assert [message for _, message in shown[5:]] in ([], ["clash"] * 2)  # seqs 6-7: deleted, or kept (the fault)


async def test_an_append_cancelled_after_its_bulk_never_costs_the_older_lines(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], redis: Redis
) -> None:
    """Cancelled (say, by a shutdown past its grace period) once its bulk wrote, before the answer came back."""
    job_id = await _job_with_older_lines(client, tenant, admin, redis)
    store = client.app[LOGS]._lines
    real_bulk = store._bulk_create
    written = asyncio.Event()

    async def bulk_then_hang(*args: Any, **kwargs: Any) -> Any:
        await real_bulk(*args, **kwargs)
        written.set()
        await asyncio.Event().wait()  # the answer never comes

    store._bulk_create = bulk_then_hang
    lines = (
        b'[{"message": "x"}, {"message": "y"}, {"message": "z"}, {"message": "w"}, {"message": "v"}, {"message": "u"}]'
    )
    appending = asyncio.create_task(client.app[LOGS].append(tenant.space_id, job_id, lines, "application/json", None))
    await asyncio.wait_for(written.wait(), 5)
    appending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await appending
    store._bulk_create = real_bulk
    shown = await _shown(client, job_id, admin)
    assert shown == KEPT  # seq 6 was this append's: deleted
