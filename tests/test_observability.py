"""Request ids, JSON access logs and Prometheus metrics."""

from __future__ import annotations

import asyncio
import io
import re
import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from dirty_equals import IsFloat, IsStr
from elasticsearch import AsyncElasticsearch

from service.api.context import ACCESS_LOG
from service.app import redis_client
from service.domain.clock import ms_from_iso
from service.settings import Settings
from service.stores.es_logs import index_for
from service.stores.redis_api_keys import ApiKeyStore
from tests.helpers import AppFactory, Tenant, body, create_job
from tests.servers import RedisProcess


async def test_request_id_is_echoed_or_generated(client: TestClient[Any, Any]) -> None:
    given = await client.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert given.headers["X-Request-Id"] == "trace-123"
    generated = await client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert len(generated.headers["X-Request-Id"]) == 26
    missing = await client.get("/nowhere")
    assert await body(missing, 404) == {"error": "Not found"}
    assert missing.headers["X-Request-Id"]


async def test_access_log_is_one_json_line_per_request_naming_the_key_by_id_only(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    written = io.StringIO()
    client.app[ACCESS_LOG].stream = written
    headers = await tenant.key("jobs:create", "jobs:read")
    api_key = headers["x-api-key"]
    job = await create_job(client, tenant, headers)
    response = await client.get(f"/api/v1/jobs/{job['id']}", headers={**headers, "X-Request-Id": "req-42"})
    await body(response, 200)
    deadline = time.monotonic() + 5
    while written.getvalue().count("\n") < 2:  # buffered: written within FLUSH_INTERVAL_S
        assert time.monotonic() < deadline, "access log lines were not written"
        await asyncio.sleep(0.02)
    lines = [orjson.loads(line) for line in written.getvalue().splitlines()]
    key_id = (await tenant.store.list_keys(tenant.space_id))[-1]["keyId"]
    assert lines[-1] == {
        "ts": IsStr(regex=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
        "level": "info",
        "logger": "joblens.access",
        "message": "request",
        "request_id": "req-42",
        "method": "GET",
        "route": "/api/v1/jobs/{jobId}",
        "status": 200,
        "latency_ms": IsFloat(ge=0),
        "key_id": key_id,
        "remote": "127.0.0.1",
    }
    assert lines[0]["route"] == "/api/v1/spaces/{spaceId}/jobs" and lines[0]["status"] == 201
    assert api_key not in written.getvalue()


async def test_access_log_lines_waiting_in_the_buffer_are_written_at_shutdown(make_client: AppFactory) -> None:
    client = await make_client()
    access_log = client.app[ACCESS_LOG]
    written = io.StringIO()
    access_log.stream = written
    access_log.FLUSH_INTERVAL_S = 3600  # only the shutdown can write the line, however slow this machine is
    await body(await client.get("/healthz", headers={"X-Request-Id": "at-shutdown"}), 200)
    assert written.getvalue() == ""  # still buffered…
    await client.close()
    assert [orjson.loads(line) for line in written.getvalue().splitlines()] == [  # …and written when the app stops
        {
            "ts": IsStr(regex=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
            "level": "info",
            "logger": "joblens.access",
            "message": "request",
            "request_id": "at-shutdown",
            "method": "GET",
            "route": "/healthz",
            "status": 200,
            "latency_ms": IsFloat(ge=0),
            "key_id": None,
            "remote": "127.0.0.1",
        }
    ]


async def test_metrics_expose_latency_per_route_and_ingest(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    await body(await client.post(f"/api/v1/jobs/{job['id']}/logs", json=[{"message": "m"}] * 3, headers=admin), 200)
    await body(await client.get(f"/api/v1/jobs/{job['id']}/logs", headers=admin), 200)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert (
        'joblens_http_request_duration_seconds_count{method="GET",route="/api/v1/jobs/{jobId}/logs",status="200"} 1.0'
        in text
    )
    assert (
        'joblens_http_request_duration_seconds_count{method="POST",route="/api/v1/jobs/{jobId}/logs",status="200"} 1.0'
        in text
    )
    assert "joblens_log_lines_ingested_total 3.0" in text
    assert "joblens_log_watermark_lag_lines_count 1.0" in text


STORE_ERRORS = re.compile(r'^joblens_store_errors_total\{store="(\w+)"\} (\S+)$', re.MULTILINE)


async def store_errors(client: TestClient[Any, Any]) -> dict[str, float]:
    """The store error counters on the metrics page, by store."""
    response = await client.get("/metrics")
    assert response.status == 200
    return {store: float(count) for store, count in STORE_ERRORS.findall(await response.text())}


async def test_store_errors_are_counted_by_store(
    make_client: AppFactory, private_redis: RedisProcess, es: AsyncElasticsearch, settings: Settings
) -> None:
    """An append Elasticsearch refuses, then a request while Redis is down: one store error each, by store."""
    client = await make_client(redis_url=private_redis.url)  # a Redis of the test's own: it is stopped below
    direct = redis_client(replace(settings, redis_url=private_redis.url))
    keys = ApiKeyStore(direct)
    tenant = Tenant((await keys.create_space("metrics"))["id"], keys)
    headers = await tenant.key("jobs:create", "jobs:read", "jobs:log")
    await direct.aclose()
    job = await create_job(client, tenant, headers)
    assert await store_errors(client) == {}

    # the job's index refuses writes: every line of the bulk request fails
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    await es.indices.create(index=index)
    await es.indices.put_settings(index=index, settings={"index.blocks.write": True})
    refused = await client.post(f"/api/v1/jobs/{job['id']}/logs", json=[{"message": "m"}], headers=headers)
    assert await body(refused, 503) == {"error": "Elasticsearch could not store the log lines; nothing was stored"}
    assert await store_errors(client) == {"elasticsearch": 1.0}

    private_redis.stop()
    # a create is a write: it needs Redis whatever an instance keeps in memory
    down = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json={"name": "later"}, headers=headers)
    assert await body(down, 503) == {"error": "Redis is unavailable; retry later"}
    assert await store_errors(client) == {"elasticsearch": 1.0, "redis": 1.0}


def test_access_log_chunks_are_whole_lines_within_an_atomic_pipe_write() -> None:
    """Workers share stderr: each write holds whole lines and fits in PIPE_BUF (or is one longer line)."""
    from service.observability import ATOMIC_WRITE_BYTES, _whole_lines_within

    lines = [b"x" * 1000] * 9 + [b"y" * 5000, b"z"]
    chunks = list(_whole_lines_within(lines, ATOMIC_WRITE_BYTES))
    assert b"".join(chunks) == b"\n".join(lines) + b"\n"
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert [len(chunk) for chunk in chunks] == [4004, 4004, 1001, 5001, 2]
