"""Shared fixtures. Every test talks to a real Redis and a real Elasticsearch.

Where they come from, in order: ``JOBLENS_REDIS_URL`` and ``JOBLENS_ELASTICSEARCH_URL`` (set by
``scripts/test.sh`` from the local stack); else testcontainers when a Docker engine answers; else the local
stack is brought up here. If none of that works the tests fail — they never skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from service.app import create_app, elasticsearch_client, redis_client
from service.settings import Settings
from service.stores.redis_api_keys import ApiKeyStore

TEST_REDIS_DB = 9  # never the database a developer's own service uses (0)


@dataclass(frozen=True)
class Backends:
    redis_url: str
    elasticsearch_url: str


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
        yield Backends(redis_url, es_url.split(",")[0])
    elif _docker_answers():
        from testcontainers.community.elasticsearch import ElasticSearchContainer
        from testcontainers.community.redis import RedisContainer

        from service.stack import ELASTICSEARCH_VERSION

        image = f"docker.elastic.co/elasticsearch/elasticsearch:{ELASTICSEARCH_VERSION}"
        es_container = ElasticSearchContainer(image, mem_limit="1g").with_env("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
        with RedisContainer("redis:7-alpine") as redis, es_container as es:
            redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
            es_url = f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}"
            yield Backends(redis_url, es_url)
    else:
        from service.stack import up

        info, _ = up()
        yield Backends(info.redis_url, info.elasticsearch_url)


def _test_db_url(redis_url: str) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") >= 3 else redis_url
    return f"{base}/{TEST_REDIS_DB}"


@pytest.fixture
def settings(backends: Backends) -> Settings:
    """Settings for one test: its own index prefix, the test Redis database, background loops off."""
    return Settings(
        redis_url=_test_db_url(backends.redis_url),
        elasticsearch_urls=(backends.elasticsearch_url,),
        index_prefix=f"jlt-{secrets.token_hex(4)}",
        connect_timeout_s=5,
        index_refresh_interval_s=0.1,  # appends wait for a refresh: keep them quick
        background_tasks=False,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    # No FLUSHDB: every test works in spaces of its own (fresh ULIDs), so test runs may overlap safely.
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


AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(settings: Settings, redis: Redis, es: AsyncElasticsearch) -> AsyncIterator[AppFactory]:
    """Start an app instance (several may run at once, like several processes behind a load balancer)."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(replace(settings, **overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[Any, Any]:
    return await make_client()


@dataclass
class Tenant:
    """A space with a way to mint keys for it."""

    space_id: str
    store: ApiKeyStore

    async def key(self, *scopes: str) -> dict[str, str]:
        api_key, _ = await self.store.create_key(self.space_id, scopes, "test")
        return {"x-api-key": api_key}


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


async def body(response: ClientResponse, status: int) -> Any:
    """The JSON body of a response that must have ``status``; the assertion shows the body otherwise."""
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def create_job(client: TestClient[Any, Any], tenant: Tenant, headers: dict[str, str], **fields: Any) -> Any:
    job = {"name": "test-job", **fields}
    response = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=job, headers=headers)
    return await body(response, 201)


async def raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client library would send; the answer's status and body (HTTP/1.1, Connection: close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload
