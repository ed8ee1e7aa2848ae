"""An append is answered once a Redis replica holds its finish (`WAIT` on the finishing connection), on a
standalone primary with a replica; a replica that does not answer holds appends up no longer than
JOBLENS_REDIS_WAIT_TIMEOUT_S and is counted. (The same on a Redis Cluster: `test_cluster_faults.py`.)"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.app import redis_client
from service.settings import Settings
from service.stores.keyspace import SpaceKeys
from service.stores.redis_api_keys import ApiKeyStore
from service.stores.redis_replication import replicas_online
from tests.helpers import AppFactory, RedisServerFactory, Tenant, body, create_job, eventually, metric_value
from tests.servers import RedisProcess

LINES = [{"message": f"line {i}"} for i in range(5)]


@dataclass
class Replicated:
    primary: RedisProcess
    replica: RedisProcess
    replica_client: Redis


@pytest.fixture
async def replicated(make_redis_server: RedisServerFactory) -> AsyncIterator[Replicated]:
    """A primary and its replica, both of the test's own, the replica in sync."""
    primary, replica = make_redis_server(), make_redis_server()
    replica_client = Redis(host="127.0.0.1", port=replica.port)
    await replica_client.replicaof("127.0.0.1", primary.port)
    primary_client = Redis(host="127.0.0.1", port=primary.port)
    try:

        async def online() -> bool:
            return replicas_online(await primary_client.info("replication")) == 1

        await eventually(online, "the replica to be in sync")
        yield Replicated(primary, replica, replica_client)
    finally:
        await primary_client.aclose()
        await replica_client.aclose()


async def _tenant(settings: Settings, redis_url: str) -> tuple[Tenant, dict[str, str]]:
    direct = redis_client(replace(settings, redis_url=redis_url))
    try:
        keys = ApiKeyStore(direct)
        tenant = Tenant((await keys.create_space("replicated"))["id"], keys)
        return tenant, await tenant.key("jobs:create", "jobs:read", "jobs:log")
    finally:
        await direct.aclose()


async def _unreplicated(client: TestClient[Any, Any]) -> float:
    return await metric_value(client, "joblens_log_appends_unreplicated_total")


async def test_an_append_is_answered_once_the_replica_holds_it(
    make_client: AppFactory, replicated: Replicated, settings: Settings
) -> None:
    client = await make_client(redis_url=replicated.primary.url, redis_wait_timeout_s=0.3)
    tenant, headers = await _tenant(settings, replicated.primary.url)
    job = await create_job(client, tenant, headers)
    durable_key = SpaceKeys(tenant.space_id).log_durable(job["id"])
    url = f"/api/v1/jobs/{job['id']}/logs"
    for _ in range(30):
        answer = await body(await client.post(url, json=LINES, headers=headers), 200)
        assert int(await replicated.replica_client.get(durable_key) or 0) >= answer["lastSeq"]
    assert await _unreplicated(client) == 0

    assert replicated.replica.process is not None
    os.kill(replicated.replica.process.pid, signal.SIGSTOP)  # it stays connected, and confirms nothing
    try:
        stopped = await body(await client.post(url, json=LINES, headers=headers), 200)
    finally:
        os.kill(replicated.replica.process.pid, signal.SIGCONT)
    assert await _unreplicated(client) == 1

    async def caught_up() -> bool:
        return int(await replicated.replica_client.get(durable_key) or 0) >= int(stopped["lastSeq"])

    await eventually(caught_up, "the replica to catch up")
    await body(await client.post(url, json=LINES, headers=headers), 200)
    assert await _unreplicated(client) == 1


async def test_zero_replicas_waits_for_none(
    make_client: AppFactory, replicated: Replicated, settings: Settings
) -> None:
    client = await make_client(redis_url=replicated.primary.url, redis_wait_replicas=0, redis_wait_timeout_s=0.3)
    tenant, headers = await _tenant(settings, replicated.primary.url)
    job = await create_job(client, tenant, headers)
    assert replicated.replica.process is not None
    os.kill(replicated.replica.process.pid, signal.SIGSTOP)
    try:
        await body(await client.post(f"/api/v1/jobs/{job['id']}/logs", json=LINES, headers=headers), 200)
    finally:
        os.kill(replicated.replica.process.pid, signal.SIGCONT)
    assert await _unreplicated(client) == 0


async def test_a_primary_without_replicas_waits_for_none(
    make_client: AppFactory, private_redis: RedisProcess, settings: Settings
) -> None:
    """auto on a lone server: no WAIT at all (it would time out on every append)."""
    client = await make_client(redis_url=private_redis.url, redis_wait_timeout_s=4.0)
    tenant, headers = await _tenant(settings, private_redis.url)
    job = await create_job(client, tenant, headers)
    for _ in range(3):
        await body(await client.post(f"/api/v1/jobs/{job['id']}/logs", json=LINES, headers=headers), 200)
    assert await _unreplicated(client) == 0


def test_online_replicas_are_read_from_info_replication() -> None:
    online = {"ip": "127.0.0.1", "port": 7001, "state": "online", "offset": 10, "lag": 0}
    loading = {"ip": "127.0.0.1", "port": 7002, "state": "wait_bgsave", "offset": 0, "lag": 0}
    assert replicas_online({"role": "master", "connected_slaves": 2, "slave0": online, "slave1": loading}) == 1
    assert replicas_online({"role": "master", "connected_slaves": 0}) == 0
    assert replicas_online({"role": "slave", "master_host": "127.0.0.1"}) == 0
