"""The read cache on a Redis Cluster: it listens to every node (primaries and replicas) and stays exact.

Runs on the cluster stack: the run's own when the tests run on it (`scripts/test.sh`'s cluster pass), otherwise
the local cluster stack is brought up (never skipped).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from devstack import cluster
from service.api.context import READ_CACHE
from service.app import redis_client
from service.settings import Settings
from service.stores.redis_api_keys import ApiKeyStore
from service.stores.redis_cache import ReadCache
from tests.conftest import Backends
from tests.helpers import AppFactory, Tenant, body, create_job, eventually


@pytest.fixture
def cluster_redis_url(backends: Backends) -> str:
    if backends.cluster:
        return backends.redis_url
    info, _ = cluster.up()
    return info.redis_url


@pytest.fixture
async def cluster_redis(cluster_redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(Settings(redis_url=cluster_redis_url))
    yield client
    await client.aclose()


async def announced_set(cache: ReadCache, redis: Redis, key: str, value: bytes) -> None:
    """SET, then wait until both the primary and its replica have announced it (so neither lands later)."""
    heard = cache.counts.invalidations
    await redis.set(key, value)
    await eventually(lambda: cache.counts.invalidations >= heard + 2)


async def test_the_cache_listens_to_every_node_and_drops_what_changed(cluster_redis: Redis) -> None:
    cache = ReadCache(cluster_redis, max_entries=100)
    stopping = asyncio.Event()
    listening = asyncio.create_task(cache.listen(stopping))
    try:
        await eventually(lambda: cache.live)
        assert len(cache.listening_to) == cluster.REDIS_NODES  # three primaries, three replicas
        key = f"jl:{{{secrets.token_hex(4)}}}:job:x"
        await announced_set(cache, cluster_redis, key, b"1")
        calls = 0

        async def load() -> bytes | None:
            nonlocal calls
            calls += 1
            return cast(bytes | None, await cluster_redis.get(key))

        assert await cache.read(key, (key,), load) == b"1"
        assert await cache.read(key, (key,), load) == b"1"
        assert calls == 1  # kept
        await announced_set(cache, cluster_redis, key, b"2")  # a write the cache did not make: only Redis tells it
        assert await cache.read(key, (key,), load) == b"2"
        assert calls == 2
    finally:
        stopping.set()
        await listening


async def test_a_change_through_another_instance_is_seen_at_once(
    make_client: AppFactory, cluster_redis: Redis, cluster_redis_url: str, settings: Settings
) -> None:
    overrides: dict[str, Any] = {"redis_url": cluster_redis_url}
    first: TestClient[Any, Any] = await make_client(**overrides)
    second: TestClient[Any, Any] = await make_client(**overrides)
    store = ApiKeyStore(cluster_redis)
    tenant = Tenant((await store.create_space("cache"))["id"], store)
    headers = await tenant.key("jobs:create", "jobs:read", "jobs:worker")
    await eventually(lambda: first.app[READ_CACHE].live and second.app[READ_CACHE].live)
    job = await create_job(first, tenant, headers)
    url = f"/api/v1/jobs/{job['id']}/progress"
    await body(await first.get(url, headers=headers), 200)
    await body(await first.get(url, headers=headers), 200)
    hits = first.app[READ_CACHE].counts.hits
    assert hits > 0  # the second read came from memory

    await body(await second.post(url, json={"percent": 40, "message": "elsewhere"}, headers=headers), 200)

    async def first_sees_it() -> bool:
        answer = await body(await first.get(url, headers=headers), 200)
        return bool(answer["progress"] == {"percent": 40, "message": "elsewhere"})

    await eventually(first_sees_it, "the other instance's write", within_s=2)
