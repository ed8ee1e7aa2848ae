"""A writer that dies after reserving seqs holds tailers back only until its lease expires; the janitor later
removes what it left in the index."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from service.domain.clock import ms_from_iso
from service.settings import Settings
from service.stores.es_logs import index_for
from service.stores.keyspace import SpaceKeys
from service.stores.redis_cache import ReadCache
from service.stores.redis_logseq import LogSeqStore
from tests.helpers import AppFactory, Tenant, create_job
from tests.logs_helpers import append, page, seqs


def orphan(job: dict[str, Any], seq: int) -> dict[str, Any]:
    """A line a dying writer's bulk request left in the index: stored, never acknowledged."""
    return {
        "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "job_id": job["id"],
        "space_id": job["spaceId"],
        "seq": seq,
        "level": "info",
        "message": "never acknowledged",
        "logged_at": job["createdAt"],
        "created_at": job["createdAt"],
    }


async def test_lines_behind_a_dead_writer_appear_when_its_lease_expires(
    client: TestClient[Any, Any],
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, [{"message": "before the crash"}])
    # A writer reserves seqs 2-4 with a 1.5 s lease, then dies without writing or releasing them.
    reserved_at = time.monotonic()  # before the lease starts: elapsed times measured from here are never short
    dead = await LogSeqStore(redis, ReadCache(redis, max_entries=0)).reserve(
        tenant.space_id, job["id"], 3, 1500, None, "-"
    )
    assert not isinstance(dead, bytes)
    assert (dead.first_seq, dead.last_seq) == (2, 4)
    # Part of its bulk request reached the index before it died: seq 3 exists, but was never acknowledged.
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    await es.index(index=index, id=f"{job['id']}:3", routing=job["id"], document=orphan(job, 3), refresh=True)
    assert await append(client, job["id"], admin, [{"message": "after"}, {"message": "the crash"}]) == {
        "accepted": 2,
        "firstSeq": 5,
        "lastSeq": 6,
    }

    # Seqs 5-6 are searchable, but a tailer must not jump over 2-4 while they may still arrive.
    held_back = await page(client, job["id"], admin, after=1)
    assert held_back["logs"] == []
    assert seqs(await page(client, job["id"], admin)) == [1]

    deadline = time.monotonic() + 10
    while not (result := await page(client, job["id"], admin, after=1))["logs"]:
        assert time.monotonic() < deadline, "the watermark stayed stuck after the lease expired"
        await asyncio.sleep(0.05)
    assert time.monotonic() - reserved_at >= 1.4
    assert seqs(result) == [5, 6]
    # the abandoned range is excluded from every read, so its stray line is never shown
    assert seqs(await page(client, job["id"], admin)) == [1, 5, 6]
    assert seqs(await page(client, job["id"], admin, q="acknowledged")) == []
    assert seqs(await page(client, job["id"], admin, before=5)) == [1]


async def test_the_janitor_removes_what_dead_writers_left_and_readers_forget_their_ranges(
    client: TestClient[Any, Any],
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    job = await create_job(client, tenant, admin)
    seq_store = LogSeqStore(redis, ReadCache(redis, max_entries=0))
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    for crash in range(3):  # acknowledged lines, each followed by a writer that dies after part of its bulk landed
        await append(client, job["id"], admin, [{"message": f"kept {crash}"}])
        dead = await seq_store.reserve(tenant.space_id, job["id"], 2, 200, None, "-")
        assert not isinstance(dead, bytes)
        line = orphan(job, dead.first_seq)
        await es.index(index=index, id=f"{job['id']}:{dead.first_seq}", routing=job["id"], document=line)
    await es.indices.refresh(index=index)
    await asyncio.sleep(0.3)  # every lease has run out
    await append(client, job["id"], admin, [{"message": "kept 3"}])  # abandons the three ranges
    keys = SpaceKeys(tenant.space_id)
    assert await redis.zcard(keys.log_abandoned(job["id"])) == 3
    expected = ["kept 0", "kept 1", "kept 2", "kept 3"]
    assert [line["message"] for line in (await page(client, job["id"], admin))["logs"]] == expected

    await asyncio.sleep(1.0)  # the grace period below: a bulk still on its way would have landed by now
    await make_client(background_tasks=True, log_lease_s=1.0, log_cleanup_grace_s=1.0)  # its first tick cleans

    async def orphans() -> int:
        found = await es.count(index=index, query={"term": {"words": "acknowledged"}})
        return int(found["count"])

    deadline = time.monotonic() + 10
    while await redis.zcard(keys.log_abandoned(job["id"])) or await orphans():
        assert time.monotonic() < deadline, "the janitor did not clean the abandoned ranges"
        await asyncio.sleep(0.05)
    assert await redis.zscore(keys.logs_to_clean, job["id"]) is None
    assert [line["message"] for line in (await page(client, job["id"], admin))["logs"]] == expected
    assert (await append(client, job["id"], admin, [{"message": "kept 4"}]))["firstSeq"] == 11


async def test_the_janitor_forgets_nothing_abandoned_after_it_looked(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], redis: Redis
) -> None:
    """A range abandoned while the janitor works (it may merge into the ranges the janitor read) has had no grace
    yet: a line of it may still land, so readers must go on excluding it."""
    job = await create_job(client, tenant, admin)
    seq_store = LogSeqStore(redis, ReadCache(redis, max_entries=0))
    keys = SpaceKeys(tenant.space_id)

    async def abandon_one() -> None:
        failed = await seq_store.reserve(tenant.space_id, job["id"], 2, 30_000, None, "-")
        assert not isinstance(failed, bytes)
        await seq_store.finish(tenant.space_id, job["id"], failed, None, 60, "-", None)

    await abandon_one()
    [(job_id, flagged_ms)] = await seq_store.jobs_to_clean(tenant.space_id, 2**62, 10)
    _, read_by_janitor = await seq_store.abandoned_ranges(tenant.space_id, job["id"])
    assert (job_id, read_by_janitor) == (job["id"], [(1, 2)])
    await asyncio.sleep(0.01)
    await abandon_one()  # 3-4 merges with 1-2
    assert not await seq_store.cleaned(tenant.space_id, job["id"], flagged_ms, read_by_janitor)
    assert await redis.zrange(keys.log_abandoned(job["id"]), 0, -1) == [b"1:4"]
    [(_, flagged_again)] = await seq_store.jobs_to_clean(tenant.space_id, 2**62, 10)
    _, read_again = await seq_store.abandoned_ranges(tenant.space_id, job["id"])
    assert await seq_store.cleaned(tenant.space_id, job["id"], flagged_again, read_again)
    assert await redis.zcard(keys.log_abandoned(job["id"])) == 0
    assert await redis.zscore(keys.logs_to_clean, job["id"]) is None
