"""A writer that dies after reserving seqs holds tailers back only until its lease expires."""

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
from service.stores.redis_cache import ReadCache
from service.stores.redis_logseq import LogSeqStore
from tests.conftest import Tenant, create_job
from tests.logs_helpers import append, page, seqs


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
    dead = await LogSeqStore(redis, ReadCache(redis, max_entries=0)).reserve(
        tenant.space_id, job["id"], 3, 1500, None, "-"
    )
    assert not isinstance(dead, bytes)
    assert (dead.first_seq, dead.last_seq) == (2, 4)
    reserved_at = time.monotonic()
    # Part of its bulk request reached the index before it died: seq 3 exists, but was never acknowledged.
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    orphan = {
        "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "job_id": job["id"],
        "space_id": tenant.space_id,
        "seq": 3,
        "level": "info",
        "message": "never acknowledged",
        "logged_at": job["createdAt"],
        "created_at": job["createdAt"],
    }
    await es.index(index=index, id=f"{job['id']}:3", routing=job["id"], document=orphan, refresh=True)
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
