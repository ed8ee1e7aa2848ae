"""Shared fixtures. Every test talks to a real Redis and a real Elasticsearch.

Where they come from, in order: ``JOBLENS_REDIS_URL`` and ``JOBLENS_ELASTICSEARCH_URL`` (set by
``scripts/test.sh`` from the local stack); else testcontainers when a Docker engine answers; else the local
stack is brought up here. If none of that works the tests fail — they never skip.

The same tests run on the cluster stack (``joblens stack env --cluster``: a ``redis+cluster://`` URL, several
Elasticsearch nodes, ``JOBLENS_INDEX_REPLICAS``): then the app gets every Elasticsearch node and indices with
replicas, and the run claims the whole Redis Cluster (it has one database only).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch
from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.cluster import RedisCluster as BlockingRedisCluster

from service.app import create_app, elasticsearch_client, redis_client
from service.settings import Settings, redis_cluster_seeds
from service.stores.redis_api_keys import ApiKeyStore
from tests.helpers import AppFactory, RedisServerFactory, Tenant
from tests.servers import RedisProcess

# Databases of the shared Redis the tests may use: never the one a developer's own service uses (0). Each run
# claims one of them for itself (see `test_redis_url`), so runs against one stack never share a database.
TEST_REDIS_DBS = range(9, 16)
RUN_CLAIM_KEY = "jl-test:run"  # outside the service's keyspace ("jl:…"): no store or background pass reads it
RUN_CLAIM_TTL_S = 6 * 3600  # far longer than any run; a run killed before its end frees its database by then


@dataclass(frozen=True)
class Backends:
    redis_url: str
    elasticsearch_url: str  # the first node
    elasticsearch_urls: tuple[str, ...] = ()  # every node (default: the first only)
    index_replicas: int = 0

    @property
    def cluster(self) -> bool:
        return redis_cluster_seeds(self.redis_url) is not None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    redis_url = os.environ.get("JOBLENS_REDIS_URL")
    es_url = os.environ.get("JOBLENS_ELASTICSEARCH_URL")
    if redis_url and es_url:
        es_urls = tuple(url.strip() for url in es_url.split(",") if url.strip())
        replicas = int(os.environ.get("JOBLENS_INDEX_REPLICAS") or 0)
        yield Backends(redis_url, es_urls[0], es_urls, replicas)
    elif _docker_answers():
        from testcontainers.community.elasticsearch import ElasticSearchContainer
        from testcontainers.community.redis import RedisContainer

        from devstack.elasticsearch import ELASTICSEARCH_VERSION

        image = f"docker.elastic.co/elasticsearch/elasticsearch:{ELASTICSEARCH_VERSION}"
        es_container = ElasticSearchContainer(image, mem_limit="1g").with_env("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
        with RedisContainer("redis:7-alpine") as redis, es_container as es:
            redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
            es_url = f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}"
            yield Backends(redis_url, es_url)
    else:
        from devstack.stack import up

        info, _ = up()
        yield Backends(info.redis_url, info.elasticsearch_url)


def _db_url(redis_url: str, db: int) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") >= 3 else redis_url
    return f"{base}/{db}"


@pytest.fixture(scope="session")
def test_redis_url(backends: Backends) -> Iterator[str]:
    """The URL of a Redis database this run has to itself, empty when the run starts.

    Never flushed while in use, and never one another run holds: several people (or a person and an editor)
    may run tests against one local stack at once. The first free database of `TEST_REDIS_DBS` is claimed with
    a key set only if absent, then emptied together with setting the claim again (FLUSHDB removes it too); the
    claim is given up when the run ends."""
    token = secrets.token_hex(8)
    if backends.cluster:
        yield from _claimed_cluster(backends.redis_url, token)
        return
    for db in TEST_REDIS_DBS:
        url = _db_url(backends.redis_url, db)
        with BlockingRedis.from_url(url) as claiming:
            if not claiming.set(RUN_CLAIM_KEY, token, nx=True, ex=RUN_CLAIM_TTL_S):
                continue
            with claiming.pipeline(transaction=True) as emptying:
                emptying.flushdb().set(RUN_CLAIM_KEY, token, ex=RUN_CLAIM_TTL_S).execute()
        break
    else:
        raise AssertionError(f"every test database {list(TEST_REDIS_DBS)} is held by another run ({RUN_CLAIM_KEY})")
    yield url
    with BlockingRedis.from_url(url) as releasing:
        if releasing.get(RUN_CLAIM_KEY) == token.encode():
            releasing.delete(RUN_CLAIM_KEY)


def _claimed_cluster(redis_url: str, token: str) -> Iterator[str]:
    """A Redis Cluster has one database: the run claims the whole cluster, empties it and keeps the claim."""
    seeds = redis_cluster_seeds(redis_url)
    assert seeds
    client = BlockingRedisCluster(host=seeds[0][0], port=seeds[0][1], require_full_coverage=False)
    try:
        if not client.set(RUN_CLAIM_KEY, token, nx=True, ex=RUN_CLAIM_TTL_S):
            raise AssertionError(f"the Redis Cluster is held by another run ({RUN_CLAIM_KEY})")
        client.flushall()  # on every primary; the claim goes too, and is set again at once
        client.set(RUN_CLAIM_KEY, token, ex=RUN_CLAIM_TTL_S)
        yield redis_url
        if client.get(RUN_CLAIM_KEY) == token.encode():
            client.delete(RUN_CLAIM_KEY)
    finally:
        client.close()


@pytest.fixture
def settings(backends: Backends, test_redis_url: str) -> Settings:
    """Settings for one test: its own index prefix, this run's Redis database, background loops off."""
    return Settings(
        redis_url=test_redis_url,
        elasticsearch_urls=backends.elasticsearch_urls or (backends.elasticsearch_url,),
        index_replicas=backends.index_replicas,
        index_prefix=f"jlt-{secrets.token_hex(4)}",
        connect_timeout_s=5,
        background_tasks=False,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = redis_client(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def es(settings: Settings) -> AsyncIterator[AsyncElasticsearch]:
    client = elasticsearch_client(settings)
    yield client
    # Deleting by wildcard is refused (action.destructive_requires_name): resolve the names first.
    created = await client.indices.get(index=f"{settings.index_prefix}-*", allow_no_indices=True)
    if created:
        await client.indices.delete(index=",".join(created))
    await client.options(ignore_status=404).indices.delete_index_template(name=settings.index_prefix)
    await client.close()


@pytest.fixture
async def make_client(settings: Settings, redis: Redis, es: AsyncElasticsearch) -> AsyncIterator[AppFactory]:
    """Start an app instance (several may run at once, like several processes behind a load balancer), served
    as ``joblens serve`` serves it: by `JsonErrorAppRunner`, which answers what the HTTP parser refuses in JSON."""
    from service.server import JsonErrorAppRunner

    class JsonErrorTestServer(TestServer):
        async def _make_runner(self, **kwargs: Any) -> JsonErrorAppRunner:  # TestServer's hook to build its runner
            return JsonErrorAppRunner(self.app, **kwargs)

    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(JsonErrorTestServer(create_app(replace(settings, **overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
async def make_tenant(redis: Redis) -> Callable[[], Awaitable[Tenant]]:
    store = ApiKeyStore(redis)

    async def create() -> Tenant:
        space = await store.create_space(f"space-{secrets.token_hex(3)}")
        return Tenant(space["id"], store)

    return create


@pytest.fixture
async def tenant(make_tenant: Callable[[], Awaitable[Tenant]]) -> Tenant:
    return await make_tenant()


@pytest.fixture
async def admin(tenant: Tenant) -> dict[str, str]:
    """A key holding every scope of its space."""
    return await tenant.key("jobs:create", "jobs:read", "jobs:worker", "jobs:kill")


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """Start redis-server processes of the test's own (for what must never touch the shared Redis: stopping it,
    flushing it, changing its settings or users, killing its clients); every one is stopped at the end."""
    servers: list[RedisProcess] = []

    def start(*, durable: bool = False) -> RedisProcess:
        workdir = tmp_path / f"redis-{len(servers)}"
        workdir.mkdir()
        server = RedisProcess(workdir, durable=durable)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def private_redis(make_redis_server: RedisServerFactory) -> RedisProcess:
    """One redis-server of the test's own, empty, started."""
    return make_redis_server()
