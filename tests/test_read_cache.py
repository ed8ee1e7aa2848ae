"""The local read cache of Get Job / Get Progress: served from memory only while Redis can tell it of changes."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.context import READ_CACHE
from service.app import redis_client
from service.settings import Settings
from service.stores.keyspace import SpaceKeys
from service.stores.redis_api_keys import ApiKeyStore
from service.stores.redis_cache import LISTENER_NAME, ReadCache
from service.stores.redis_logseq import LogSeqStore
from tests.helpers import AppFactory, Tenant, body, create_job, eventually
from tests.servers import RedisProcess


@pytest.fixture
async def own_redis(private_redis: RedisProcess) -> AsyncIterator[Redis]:
    """A client of a redis-server of the test's own: these tests count every announcement and reset, which
    anything else on a shared server (a flush, another run's clients) would add to; some kill clients or flush."""
    client = redis_client(Settings(redis_url=private_redis.url))
    yield client
    await client.aclose()


@pytest.fixture
async def cache(own_redis: Redis) -> AsyncIterator[ReadCache]:
    cache = ReadCache(own_redis, max_entries=100)
    stopping = asyncio.Event()
    listening = asyncio.create_task(cache.listen(stopping))
    await eventually(lambda: cache.live)
    yield cache
    stopping.set()
    await listening


async def announced_set(cache: ReadCache, redis: Redis, key: str, value: str) -> None:
    """SET, then wait until the cache has heard Redis announce it (so the announcement cannot land later)."""
    heard = cache.counts.invalidations
    await redis.set(key, value)
    await eventually(lambda: cache.counts.invalidations > heard)


class CountingLoader:
    def __init__(self, redis: Redis, key: str) -> None:
        self.redis, self.key, self.calls = redis, key, 0

    async def __call__(self) -> bytes | None:
        self.calls += 1
        return cast(bytes | None, await self.redis.get(self.key))


async def test_repeated_reads_are_served_from_memory_until_the_key_changes(cache: ReadCache, own_redis: Redis) -> None:
    key = SpaceKeys("cache-test-1").progress("job")
    await announced_set(cache, own_redis, key, "v1")
    load = CountingLoader(own_redis, key)
    assert [await cache.read(key, (key,), load) for _ in range(3)] == [b"v1"] * 3
    assert load.calls == 1

    await own_redis.set(key, "v2")  # another client's write: only Redis's announcement can tell us
    await eventually(lambda: key not in cache._entries)
    assert await cache.read(key, (key,), load) == b"v2"
    assert load.calls == 2


async def test_a_read_in_flight_while_its_key_changes_is_returned_but_not_kept(
    cache: ReadCache, own_redis: Redis
) -> None:
    key = SpaceKeys("cache-test-2").progress("job")
    await own_redis.set(key, "old")
    fetched, release = asyncio.Event(), asyncio.Event()

    async def slow_load() -> bytes | None:
        value = cast(bytes | None, await own_redis.get(key))
        fetched.set()
        await release.wait()  # the change lands between Redis's answer and the caller's use of it
        return value

    reading = asyncio.create_task(cache.read(key, (key,), slow_load))
    await fetched.wait()
    seen = cache.counts.invalidations
    await own_redis.set(key, "new")
    await eventually(lambda: cache.counts.invalidations > seen)
    release.set()
    assert await reading == b"old"
    assert await cache.read(key, (key,), CountingLoader(own_redis, key)) == b"new"  # the old value was not kept


async def test_a_local_write_is_read_back_at_once(cache: ReadCache, own_redis: Redis) -> None:
    key = SpaceKeys("cache-test-3").progress("job")
    await own_redis.set(key, "v1")
    load = CountingLoader(own_redis, key)
    await cache.read(key, (key,), load)
    await own_redis.set(key, "v2")
    cache.forget((key,))  # what a store does after its own write, before any announcement arrives
    assert await cache.read(key, (key,), load) == b"v2"


async def test_losing_the_listener_drops_everything_and_reads_go_to_redis_until_it_is_back(
    cache: ReadCache, own_redis: Redis
) -> None:
    key = SpaceKeys("cache-test-4").progress("job")
    await announced_set(cache, own_redis, key, "v1")
    load = CountingLoader(own_redis, key)
    await cache.read(key, (key,), load)
    resets = cache.counts.resets

    assert await own_redis.client_kill_filter(_type="pubsub", skipme=True) >= 1  # includes our listener
    await eventually(lambda: not cache.live)
    assert cache.counts.resets > resets and not cache._entries
    await own_redis.set(key, "v2")  # a change nobody announced to us
    assert await cache.read(key, (key,), load) == b"v2"

    await eventually(lambda: cache.live)  # reconnected and subscribed again
    names = [client["name"] for client in await own_redis.client_list(_type="pubsub")]
    assert LISTENER_NAME in names
    await cache.read(key, (key,), load)
    calls = load.calls
    assert await cache.read(key, (key,), load) == b"v2" and load.calls == calls  # cached again


async def test_a_flush_of_any_database_drops_everything(
    cache: ReadCache, own_redis: Redis, private_redis: RedisProcess
) -> None:
    key = SpaceKeys("cache-test-5").progress("job")
    await own_redis.set(key, "v1")
    await cache.read(key, (key,), CountingLoader(own_redis, key))
    other_db = Redis.from_url(private_redis.url.rsplit("/", 1)[0] + "/15")
    resets = cache.counts.resets
    await other_db.flushdb()  # Redis announces a flush as "everything changed", whatever the database
    await other_db.aclose()
    await eventually(lambda: cache.counts.resets > resets)
    assert not cache._entries


async def test_entries_are_bounded(own_redis: Redis) -> None:
    cache = ReadCache(own_redis, max_entries=2)
    stopping = asyncio.Event()
    listening = asyncio.create_task(cache.listen(stopping))
    await eventually(lambda: cache.live)
    keys = [SpaceKeys("cache-test-6").progress(f"job-{i}") for i in range(5)]
    for key in keys:
        await cache.read(key, (key,), CountingLoader(own_redis, key))
    assert list(cache._entries) == keys[-2:]
    stopping.set()
    await listening


async def read_progress(client: TestClient[Any, Any], job_id: str, headers: dict[str, str]) -> Any:
    return await body(await client.get(f"/api/v1/jobs/{job_id}/progress", headers=headers), 200)


async def test_two_instances_see_each_others_progress_and_transitions(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    reader, writer = await make_client(), await make_client()
    await eventually(lambda: reader.app[READ_CACHE].live)
    job = await create_job(writer, tenant, admin)
    path = f"/api/v1/jobs/{job['id']}"
    cache = reader.app[READ_CACHE]
    cache._max_age_s = 3600  # entries never expire here: only Redis's announcements can bring the reader up to date

    async def both_served_from_memory() -> bool:
        hits = cache.counts.hits
        assert (await read_progress(reader, job["id"], admin))["progress"] is None
        assert (await body(await reader.get(path, headers=admin), 200))["status"] == "pending"
        return bool(cache.counts.hits == hits + 2)

    await eventually(both_served_from_memory)

    report = {"percent": 50, "message": "half"}
    await body(await writer.post(f"{path}/progress", json=report, headers=admin), 200)
    await body(await writer.post(f"{path}/claim", headers=admin), 200)

    async def reader_caught_up() -> bool:
        progress = await read_progress(reader, job["id"], admin)
        status = (await body(await reader.get(path, headers=admin), 200))["status"]
        return bool(progress["progress"] == report and status == "delivered")

    await eventually(reader_caught_up)


async def test_an_instance_reads_its_own_writes(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    await eventually(lambda: client.app[READ_CACHE].live)
    job = await create_job(client, tenant, admin)
    path = f"/api/v1/jobs/{job['id']}"
    for percent in range(20):
        await read_progress(client, job["id"], admin)  # cached…
        await body(await client.post(f"{path}/progress", json={"percent": percent, "message": "m"}, headers=admin), 200)
        assert (await read_progress(client, job["id"], admin))["progress"] == {
            "percent": percent,
            "message": "m",
        }  # …and fresh
    for action, status in (("claim", "delivered"), ("ack", "running"), ("complete", "completed")):
        await body(await client.get(path, headers=admin), 200)
        await body(await client.post(f"{path}/{action}", json={}, headers=admin), 200)
        assert (await body(await client.get(path, headers=admin), 200))["status"] == status


async def test_a_quiet_jobs_log_window_is_kept_until_a_write_and_never_while_one_is_in_flight(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], redis: Redis
) -> None:
    reader, writer = await make_client(), await make_client()
    cache = reader.app[READ_CACHE]
    cache._max_age_s = 3600  # entries never expire here: only Redis's announcements can bring the reader up to date
    await eventually(lambda: cache.live)
    job = await create_job(writer, tenant, admin)
    logs = f"/api/v1/jobs/{job['id']}/logs"
    await body(await writer.post(logs, json=[{"message": "one"}], headers=admin), 200)

    async def seqs_read() -> list[int]:
        return [line["seq"] for line in (await body(await reader.get(f"{logs}?after=0", headers=admin), 200))["logs"]]

    async def window_kept() -> bool:
        hits = cache.counts.hits
        await seqs_read()
        return bool(cache.counts.hits > hits)

    await eventually(window_kept)

    # another instance reserves a range and dies holding it: the window drops, and is not kept while it is held
    other_instance = LogSeqStore(redis, ReadCache(redis, max_entries=0))
    await other_instance.reserve(tenant.space_id, job["id"], 2, 60_000, None, "-")
    await eventually(lambda: SpaceKeys(tenant.space_id).log_visible(job["id"]) not in cache._entries)
    for _ in range(3):
        assert await seqs_read() == [1]
    assert SpaceKeys(tenant.space_id).log_visible(job["id"]) not in cache._entries

    # lines appended through the writer instance reach the reader's tail without waiting for any expiry
    # as if the other instance had finished its range after all (having written nothing)
    await redis.delete(SpaceKeys(tenant.space_id).log_inflight(job["id"]))
    await redis.zadd(SpaceKeys(tenant.space_id).log_done(job["id"]), {"2:3": 2})
    await body(await writer.post(logs, json=[{"message": "four"}], headers=admin), 200)
    await eventually(lambda: _equals(seqs_read(), [1, 4]))


async def _equals(seqs: Awaitable[list[int]], expected: list[int]) -> bool:
    return await seqs == expected


async def test_the_cache_counters_are_on_the_metrics_page(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    cache = client.app[READ_CACHE]
    await eventually(lambda: cache.live)
    job = await create_job(client, tenant, admin)

    async def served_from_memory() -> bool:
        hits = cache.counts.hits
        await read_progress(client, job["id"], admin)
        return bool(cache.counts.hits > hits)

    await eventually(served_from_memory)
    text = await (await client.get("/metrics")).text()
    counter = re.compile(r'joblens_read_cache_events_total\{event="(\w+)"\} (\S+)')
    scraped = {event: float(value) for event, value in counter.findall(text)}
    assert set(scraped) == {"hits", "misses", "resets", "invalidations"}
    assert 1 <= scraped["hits"] <= cache.counts.hits
    assert 1 <= scraped["misses"] <= cache.counts.misses


async def test_with_the_cache_off_every_read_goes_to_redis(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(read_cache_entries=0)
    job = await create_job(client, tenant, admin)
    for percent in (10, 20):
        report = {"percent": percent, "message": "m"}
        await body(await client.post(f"/api/v1/jobs/{job['id']}/progress", json=report, headers=admin), 200)
        assert (await read_progress(client, job["id"], admin))["progress"] == report
        assert (await read_progress(client, job["id"], admin))["progress"] == report
    cache = client.app[READ_CACHE]
    assert not cache.live and cache.counts.hits == 0 and cache.counts.misses == 4


async def test_a_redis_that_refuses_tracking_leaves_the_cache_off_and_reads_working(
    make_client: AppFactory, own_redis: Redis, private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # an ACL user without CLIENT commands, like a managed Redis that disables them (users are server-wide: a
    # server of the test's own)
    password = secrets.token_hex(16)
    await own_redis.acl_setuser(
        "no-client", enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-client"]
    )
    keys = ApiKeyStore(own_redis)
    tenant = Tenant((await keys.create_space("no-tracking"))["id"], keys)
    admin = await tenant.key("jobs:create", "jobs:read")
    client = await make_client(redis_url=f"redis://no-client:{password}@127.0.0.1:{private_redis.port}/0")
    job = await create_job(client, tenant, admin)
    await eventually(lambda: "refused client tracking" in caplog.text)  # said once; no retries
    for _ in range(2):
        assert (await read_progress(client, job["id"], admin))["progress"] is None
    cache = client.app[READ_CACHE]
    assert not cache.live and cache.counts.hits == 0
