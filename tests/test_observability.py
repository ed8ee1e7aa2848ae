"""Request ids, JSON access logs and Prometheus metrics."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from dirty_equals import IsFloat, IsStr

from service.api.context import ACCESS_LOG
from tests.conftest import AppFactory, Tenant, body, create_job


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
    written = io.StringIO()
    client.app[ACCESS_LOG].stream = written
    await client.get("/healthz")
    assert written.getvalue() == ""  # still buffered…
    await client.close()
    assert orjson.loads(written.getvalue())["route"] == "/healthz"  # …and written when the app stops


async def test_metrics_expose_latency_per_route_store_errors_and_ingest(
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
    assert "# TYPE joblens_store_errors_total counter" in text
