"""Liveness and readiness against real Redis and Elasticsearch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.settings import Settings
from tests.helpers import AppFactory, body
from tests.servers import RedisProcess


async def test_healthz_answers_without_touching_stores(client: TestClient[Any, Any]) -> None:
    assert await body(await client.get("/healthz"), 200) == {"status": "ok"}


async def test_readyz_is_200_when_both_stores_answer(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert await body(response, 200) == {"status": "ready", "redis": "ok", "elasticsearch": "ok"}
    assert response.headers["X-Request-Id"]


async def test_readyz_is_503_naming_redis_when_redis_stops_and_recovers(
    make_client: AppFactory, private_redis: RedisProcess, settings: Settings
) -> None:
    client = await make_client(redis_url=private_redis.url)
    assert (await client.get("/readyz")).status == 200

    private_redis.stop()
    assert await body(await client.get("/readyz"), 503) == {
        "error": "Not ready: redis unavailable",
        "redis": "down",
        "elasticsearch": "ok",
    }

    private_redis.start()
    assert await body(await client.get("/readyz"), 200) == {"status": "ready", "redis": "ok", "elasticsearch": "ok"}


async def test_api_calls_answer_503_json_while_redis_is_down(
    make_client: AppFactory, private_redis: RedisProcess
) -> None:
    client = await make_client(redis_url=private_redis.url)
    private_redis.stop()
    response = await client.get("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers={"x-api-key": "emit_x"})
    # An unparseable key is refused before any store is asked.
    assert await body(response, 401) == {"error": "Invalid or revoked API key"}
    key = "emit_01ARZ3NDEKTSV4RRFFQ69G5FAV_" + "a" * 43
    response = await client.get("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers={"x-api-key": key})
    assert await body(response, 503) == {"error": "Redis is unavailable; retry later"}


async def test_startup_fails_clearly_when_elasticsearch_never_answers(settings: Settings) -> None:
    broken = replace(settings, elasticsearch_urls=("http://127.0.0.1:9",), connect_timeout_s=0.5)
    server_client: TestClient[Any, Any] = TestClient(TestServer(create_app(broken)))
    with pytest.raises(RuntimeError, match="elasticsearch did not answer within"):
        await server_client.start_server()
    await server_client.close()
