"""Fault injection (bounded, loopback only): Redis and Elasticsearch die and come back under load.

During an outage the service answers only JSON 503s; afterwards it recovers by itself within 5 s; every log
line whose append was acknowledged is stored exactly once, and a tailer never sees a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from devstack import stack
from service.app import redis_client
from service.settings import Settings
from service.stores.redis_api_keys import ApiKeyStore
from tests.helpers import AppFactory, RedisServerFactory, Tenant
from tests.logs_helpers import all_seqs, wait_watermark_settles
from tests.servers import kill_elasticsearch

RECOVERY_LIMIT_S = 5.0
FAULT_STACK_DIR = "/var/tmp/joblens-fault-stack"  # noqa: S108 - reused between runs: Elasticsearch stays unpacked


@dataclass
class LoadRecord:
    acknowledged: list[tuple[int, int]] = field(default_factory=list)  # (firstSeq, lastSeq) per 200
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    successes: list[tuple[str, float]] = field(default_factory=list)  # (request kind, monotonic time)
    tailed: list[int] = field(default_factory=list)

    def acknowledged_seqs(self) -> list[int]:
        return sorted(seq for first, last in self.acknowledged for seq in range(first, last + 1))

    def recovery_s(self, since: float, kinds: set[str]) -> float:
        """Seconds from ``since`` until every kind of request succeeded again."""
        return max(min(t for kind, t in self.successes if kind == k and t >= since) - since for k in kinds)


async def _call(
    record: LoadRecord, kind: str, request: Awaitable[Any], expect_ok: int = 200
) -> dict[str, Any] | list[Any] | None:
    response = await request
    record.statuses[response.status] += 1
    if response.content_type != "application/json":
        record.unexpected.append(f"{kind}: {response.status} {response.content_type}")
        return None
    payload = await response.json()
    if response.status == expect_ok:
        record.successes.append((kind, time.monotonic()))
        return payload  # type: ignore[no-any-return]
    if response.status != 503 or set(payload) != {"error"}:
        record.unexpected.append(f"{kind}: {response.status} {payload}")
    return None


async def _run_load(
    client: TestClient[Any, Any],
    headers: dict[str, str],
    space_id: str,
    job_id: str,
    stop: asyncio.Event,
    record: LoadRecord,
    readers: bool,
) -> None:
    rng = random.Random(7)

    async def writer(number: int) -> None:
        while not stop.is_set():
            lines = [{"message": f"w{number} line {i}", "level": "info"} for i in range(rng.randint(10, 120))]
            answer = await _call(
                record, "append", client.post(f"/api/v1/jobs/{job_id}/logs", json=lines, headers=headers)
            )
            if isinstance(answer, dict):
                record.acknowledged.append((answer["firstSeq"], answer["lastSeq"]))
            else:
                await asyncio.sleep(0.05)

    async def reader() -> None:
        while not stop.is_set():
            await _call(record, "get", client.get(f"/api/v1/jobs/{job_id}", headers=headers))
            await _call(record, "progress", client.get(f"/api/v1/jobs/{job_id}/progress", headers=headers))
            await _call(record, "list", client.get(f"/api/v1/spaces/{space_id}/jobs?limit=5", headers=headers))
            await asyncio.sleep(0.02)

    tasks = [writer(n) for n in range(3)] + ([reader(), reader()] if readers else [])
    await asyncio.gather(*tasks)


async def _tail(
    client: TestClient[Any, Any], headers: dict[str, str], job_id: str, record: LoadRecord, done: asyncio.Event
) -> None:
    """Follow ``after = newestSeq`` until the writers are done and a page comes back empty."""
    after = 0
    while True:
        finished = done.is_set()
        page = await _call(
            record,
            "tail",
            client.get(f"/api/v1/jobs/{job_id}/logs", params={"after": after, "limit": 500}, headers=headers),
        )
        if isinstance(page, dict) and page["logs"]:
            record.tailed.extend(line["seq"] for line in page["logs"])
            after = page["cursor"]["newestSeq"]
            continue
        if finished and isinstance(page, dict):
            return
        await asyncio.sleep(0.05)


def _assert_exactly_once(record: LoadRecord, stored: list[int]) -> None:
    acknowledged = record.acknowledged_seqs()
    assert record.unexpected == []
    assert len(acknowledged) == len(set(acknowledged))
    assert stored == acknowledged, "stored lines differ from acknowledged ones"
    assert record.tailed == acknowledged, "the tailer skipped, repeated or saw unacknowledged lines"


async def _outage_under_load(
    client: TestClient[Any, Any],
    headers: dict[str, str],
    space_id: str,
    job_id: str,
    outage: Callable[[], Awaitable[None]],
    checked_kinds: set[str],
    name: str,
) -> None:
    """Load the job (appends, a tailer, and reads when ``get`` is checked), run ``outage`` (which returns once
    the dependency is back), then check the JSON 503s, the recovery time, and every line exactly once."""
    record = LoadRecord()
    stop, done = asyncio.Event(), asyncio.Event()
    tailer = asyncio.create_task(_tail(client, headers, job_id, record, done))
    load = asyncio.create_task(
        _run_load(client, headers, space_id, job_id, stop, record, readers="get" in checked_kinds)
    )
    await asyncio.sleep(1.5)
    await outage()
    back_at = time.monotonic()
    await asyncio.sleep(3)
    stop.set()
    await load
    top = max(last for _, last in record.acknowledged)
    await wait_watermark_settles(client, headers, job_id, top)
    done.set()
    await asyncio.wait_for(tailer, 30)

    assert record.statuses[503] > 0, "the outage was not observed"
    recovery = record.recovery_s(back_at, checked_kinds)
    assert recovery < RECOVERY_LIMIT_S
    _assert_exactly_once(record, await all_seqs(client, headers, job_id))
    print(
        f"{name}: {len(record.acknowledged_seqs())} lines acknowledged and found once, {dict(record.statuses)}, "
        f"recovered {recovery:.2f}s after the dependency was back"
    )


async def test_redis_restart_during_mixed_load(
    make_client: AppFactory, make_redis_server: RedisServerFactory, settings: Settings
) -> None:
    durable_redis = make_redis_server(durable=True)
    client = await make_client(redis_url=durable_redis.url, log_lease_s=2.0)
    direct: Redis = redis_client(Settings(redis_url=durable_redis.url))
    store = ApiKeyStore(direct)
    space = await store.create_space("faults")
    api_key, _ = await store.create_key(space["id"], ("jobs:create", "jobs:read", "jobs:log"), "load")
    await direct.aclose()
    headers = {"x-api-key": api_key}
    created = await client.post(f"/api/v1/spaces/{space['id']}/jobs", json={"name": "under-fire"}, headers=headers)
    job_id = (await created.json())["id"]

    async def restart_redis() -> None:
        durable_redis.stop()  # SIGKILL
        await asyncio.sleep(1.5)
        durable_redis.start()

    kinds = {"append", "get", "progress", "list", "tail"}
    await _outage_under_load(client, headers, space["id"], job_id, restart_redis, kinds, "redis restart")


@pytest.fixture
def private_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], stack.StackInfo]]:
    """A second local stack (its own Elasticsearch), so killing Elasticsearch disturbs no other test."""
    monkeypatch.setenv("JOBLENS_STACK_DIR", FAULT_STACK_DIR)

    def start() -> stack.StackInfo:
        info, _ = stack.up()
        return info

    yield start
    stack.down()


async def test_elasticsearch_restart_during_ingestion(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], private_stack: Callable[[], stack.StackInfo]
) -> None:
    info = await asyncio.to_thread(private_stack)
    client = await make_client(elasticsearch_urls=(info.elasticsearch_url,), log_lease_s=3.0, connect_timeout_s=60)
    created = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "under-fire"}, headers=admin)
    job_id = (await created.json())["id"]

    async def restart_elasticsearch() -> None:
        await asyncio.to_thread(kill_elasticsearch)
        await asyncio.sleep(1)
        restarted = await asyncio.to_thread(private_stack)
        assert restarted.elasticsearch_url == info.elasticsearch_url

    kinds = {"append", "tail"}
    await _outage_under_load(client, admin, tenant.space_id, job_id, restart_elasticsearch, kinds, "es restart")
