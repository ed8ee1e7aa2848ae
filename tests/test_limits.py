"""Limits and abuse: body sizes per route, slow clients, long headers and queries, rate limits, secrets in logs."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from dirty_equals import IsStr

from service.api.context import ACCESS_LOG
from service.observability import JsonFormatter
from tests.helpers import AppFactory, Tenant, body, create_job, eventually, raw_exchange
from tests.matchers import ANY_ULID


@pytest.mark.parametrize(
    ("action", "limit"),
    [("poll", 64 * 1024), ("kill", 64 * 1024), ("complete", 2 * 1024 * 1024), ("event", 2 * 1024 * 1024)],
)
async def test_each_route_has_its_own_body_limit(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], action: str, limit: int
) -> None:
    job = await create_job(client, tenant, admin)
    path = f"/api/v1/spaces/{tenant.space_id}/jobs/poll" if action == "poll" else f"/api/v1/jobs/{job['id']}/{action}"
    oversized = io.BytesIO(b'{"x": "' + b"y" * limit + b'"}')
    response = await client.post(path, data=oversized, headers={**admin, "Content-Type": "application/json"})
    assert await body(response, 413) == {"error": f"Request body too large: at most {limit} bytes"}


async def test_a_client_that_stops_sending_its_body_times_out(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(body_timeout_s=0.5)
    job = await create_job(client, tenant, admin)
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    request = (
        f"POST /api/v1/jobs/{job['id']}/logs HTTP/1.1\r\nHost: x\r\nx-api-key: {admin['x-api-key']}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"message": '
    )
    started = time.monotonic()  # before the server can start its clock: the time measured is never short
    writer.write(request.encode())
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        rest = await reader.read(200)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b'{"error":"The request body was not received within 0.5s"}' in rest
    assert time.monotonic() - started >= 0.4  # not before the body timeout (0.5 s, less timer slack)


async def test_idle_and_half_open_connections_are_closed(make_client: AppFactory) -> None:
    client = await make_client(idle_timeout_s=0.5)
    assert client.port is not None
    started = time.monotonic()  # before the server can start its clocks: the time measured is never short
    silent = await asyncio.open_connection("127.0.0.1", client.port)
    trickling = await asyncio.open_connection("127.0.0.1", client.port)
    trickling[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    async with asyncio.timeout(10):
        for reader, _ in (silent, trickling):
            assert await reader.read() == b""  # closed by the server, without an answer
    assert time.monotonic() - started >= 0.4  # not before the idle timeout (0.5 s, less timer slack)
    for _, writer in (silent, trickling):
        writer.close()


async def test_overlong_headers_and_urls_are_refused_in_json(
    client: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    logs = "/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/logs"
    long_url = await client.get(f"{logs}?q=" + "a" * 17_000, headers=admin)
    assert await body(long_url, 414) == {"error": "Request URL too long: at most 16384 bytes"}
    long_header = await client.get("/healthz", headers={"X-Filler": "a" * 9_000})
    assert await body(long_header, 431) == {"error": "Request header X-Filler too large: at most 8192 bytes"}
    many_headers = await client.get("/healthz", headers={f"X-Filler-{i}": "a" * 7_000 for i in range(5)})
    assert await body(many_headers, 431) == {"error": "Request headers too large: at most 32768 bytes in all"}
    # within the limits: a 1,024-character non-ASCII query (about 12 KiB encoded) is an ordinary request
    assert (await client.get(f"{logs}?q=" + "é" * 1024 + "&limit=1", headers=admin)).status == 404


HOST = b"Host: h\r\n"
PARSER_REFUSES = [
    (b"GARBAGE\r\n\r\n", 400, "Malformed request line: Invalid method encountered"),
    (b"GET /healthz HTTP/9\r\n" + HOST, 400, "Malformed request line: Expected dot"),
    (b"GET /healthz?" + b"a" * 40_000 + b" HTTP/1.1\r\n" + HOST, 414, "Request URL too long: at most 16384 bytes"),
    (
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Filler: " + b"a" * 40_000 + b"\r\n",
        431,
        "Request header too large: at most 8192 bytes",
    ),
    (b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Filler: a\r\n" * 200, 431, "Too many request headers: at most 128"),
    (b"GET /healthz\x00 HTTP/1.1\r\n" + HOST, 400, "Malformed request URL: Invalid char in url path"),
    (b"GET /healthz\xff\xfe HTTP/1.1\r\n" + HOST, 400, "Malformed request URL: Invalid char in url path"),
    (b"GET /healthz HTTP/1.1\r\n", 400, "Malformed request: Missing 'Host' header in request"),
    (
        b"POST /healthz HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n",
        400,
        "Malformed request: Invalid character in chunk size",
    ),
    (
        b"POST /healthz HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        400,
        "Malformed request: Transfer-Encoding can't be present with Content-Length",
    ),
    (
        b"POST /healthz HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        400,
        "Malformed request: Duplicate Content-Length",
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    PARSER_REFUSES,
    ids=[
        "malformed request line",
        "unknown HTTP version",
        "request line too long",
        "header too large",
        "too many headers",
        "NUL in the path",
        "invalid UTF-8 in the path",
        "no Host",
        "broken chunked body",
        "Content-Length and Transfer-Encoding",
        "two Content-Lengths",
    ],
)
async def test_what_the_http_parser_refuses_is_still_a_client_error(
    client: TestClient[Any, Any], request_bytes: bytes, status: int, message: str
) -> None:
    """Beyond twice the limits, or malformed: the HTTP parser refuses the request before any middleware runs —
    and the server still answers in our JSON shape, closing the connection."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(request_bytes + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to the server's close
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    assert (int(status_line.split(" ")[1]), payload) == (status, orjson.dumps({"error": message}))
    request_id: object = ANY_ULID  # a new one: the request's own was not read
    assert (headers["content-type"], headers["connection"], headers["x-request-id"]) == (
        "application/json",
        "close",
        request_id,
    )


async def test_a_flood_of_refused_requests_is_a_warning_a_second_not_an_error_each(
    client: TestClient[Any, Any],
) -> None:
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert client.port is not None
        answers = await asyncio.gather(*(raw_exchange(client.port, b"GARBAGE\r\n\r\n") for _ in range(50)))
        # once the interval ends, the count of those not logged is written
        await eventually(lambda: len(captured.getvalue().splitlines()) >= 2, "the count of refusals not logged")
    finally:
        root.removeHandler(handler)
    assert {status for status, _ in answers} == {400}
    records = [orjson.loads(line) for line in captured.getvalue().splitlines()]
    assert [(r["level"], r["logger"]) for r in records] == [("warning", "service.server")] * 2, records
    assert records[0]["message"] == IsStr(
        regex=r"refused a request the HTTP parser could not accept, from 127\.0\.0\.1: .*"
    )
    assert records[1]["message"] == (
        "refused 49 more requests the HTTP parser could not accept in the last 1s (not logged one by one)"
    )
    assert "exception" not in records[0] and "Traceback" not in captured.getvalue()
    metrics = await (await client.get("/metrics")).text()
    assert 'joblens_http_requests_refused_total{status="400"} 50.0' in metrics


async def test_a_burst_from_one_key_does_not_slow_another_key(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(rate_limit_per_s=20)
    noisy = await tenant.key("jobs:read")
    quiet = await tenant.key("jobs:read")
    job = await create_job(client, tenant, admin)
    url = f"/api/v1/jobs/{job['id']}/progress"

    async def status(headers: dict[str, str]) -> int:
        response = await client.get(url, headers=headers)
        await response.read()
        return response.status

    burst = asyncio.gather(*(status(noisy) for _ in range(300)))
    during = [await status(quiet) for _ in range(15)]  # within the quiet key's own bucket of 20
    assert during == [200] * 15  # the quiet key is never limited by the noisy key's burst…
    assert (await burst).count(429) >= 250  # …which is limited
    # still limited: of ten more at once (the bucket refills one token every 50 ms), most are refused
    after = await asyncio.gather(*(client.get(url, headers=noisy) for _ in range(10)))
    limited = [response for response in after if response.status == 429]
    assert len(limited) >= 5
    assert all(int(response.headers["Retry-After"]) >= 1 for response in limited)


async def test_a_burst_beyond_the_redis_connections_waits_for_one(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    """More commands at once than connections to Redis: they queue for a connection, none fails."""
    client = await make_client(redis_max_connections=4, read_cache_entries=0)
    jobs = [await create_job(client, tenant, admin) for _ in range(5)]

    async def status(url: str) -> int:
        response = await client.get(url, headers=admin)
        await response.read()
        return response.status

    urls = [f"/api/v1/jobs/{job['id']}{path}" for job in jobs for path in ("", "/progress", "/logs")] * 4
    assert await asyncio.gather(*(status(url) for url in urls)) == [200] * len(urls)


async def test_keys_and_callback_secrets_never_reach_the_logs(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client(background_tasks=True, timeout_loop_interval_s=0.05, callback_max_attempts=1)
    access_log = client.app[ACCESS_LOG]
    access_log.stream = io.StringIO()
    secret = "hook-secret-value-42"
    job = await create_job(
        client, tenant, admin, callbackUrl="http://127.0.0.1:9/hook", callbackHeaders={"Authorization": secret}
    )
    await client.post(f"/api/v1/jobs/{job['id']}/kill", headers=admin)
    await client.get(
        "/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers={"Authorization": f"Bearer {admin['x-api-key']}x"}
    )
    deadline = time.monotonic() + 10
    while True:
        events = (await body(await client.get(f"/api/v1/jobs/{job['id']}", headers=admin), 200))["events"]
        if events[-1]["type"] == "callback_failed":
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    access_log.flush()
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}" for r in caplog.records)
    logged += access_log.stream.getvalue()
    assert '"status":401' in logged  # the refused call is in the access log…
    assert "callback for job" in logged  # the callback failure is logged…
    assert secret not in logged  # …but never the headers, nor the key
    assert admin["x-api-key"] not in logged
    assert admin["x-api-key"][-20:] not in logged


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"x-api-key: KEY\x00\x01", b"400"),
        (b"x-api-key: KEY" + b"k" * 17_000, b"431"),
        (b"X-Junk: a\r\nx-api-key KEY", b"400"),
    ],
    ids=["control character", "over 16 KiB", "malformed line"],
)
async def test_keys_in_requests_the_parser_refuses_never_reach_the_logs(
    client: TestClient[Any, Any], admin: dict[str, str], header: bytes, status: bytes
) -> None:
    """aiohttp's parser logs what it could not parse, quoting the bytes: the JSON log masks any key in it."""
    key = admin["x-api-key"]
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        assert client.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"GET /api/v1/jobs/x HTTP/1.1\r\nHost: h\r\n" + header.replace(b"KEY", key.encode()) + b"\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await eventually(lambda: "emit_[redacted]" in captured.getvalue(), "the parser's log line")  # after answering
    finally:
        logging.getLogger().removeHandler(handler)
    assert status_line.split(b" ")[1] == status
    logged = captured.getvalue()
    assert "emit_[redacted]" in logged  # the parser did log the request…
    assert key not in logged  # …but not the key, nor any part of its secret
    assert key.split("_", 2)[2][:20] not in logged  # emit_<space id>_<secret>: the secret may hold "_"


async def test_a_body_that_does_not_decode_as_its_content_encoding_says_is_400(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    assert client.port is not None
    for path in (f"/api/v1/jobs/{job['id']}/logs", f"/api/v1/spaces/{tenant.space_id}/jobs"):
        request = (
            f"POST {path} HTTP/1.1\r\nHost: h\r\nx-api-key: {admin['x-api-key']}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 15\r\n\r\nnot gzip at all"
        )
        status, payload = await raw_exchange(client.port, request.encode())
        assert (status, payload) == (400, b'{"error":"body could not be read as sent (Content-Encoding \'gzip\')"}')
    headers = {**admin, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    gzipped = await client.post(
        f"/api/v1/jobs/{job['id']}/logs", data=gzip.compress(b'[{"message": "zipped"}]'), headers=headers
    )
    assert (await body(gzipped, 200))["accepted"] == 1


async def test_a_client_gone_mid_body_is_499_in_the_access_log_not_an_error(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    job = await create_job(client, tenant, admin)
    access_log = client.app[ACCESS_LOG]
    access_log.stream = io.StringIO()
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        f"POST /api/v1/jobs/{job['id']}/logs HTTP/1.1\r\nHost: h\r\nx-api-key: {admin['x-api-key']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    # answered once the handler runs and asks for the body: the client leaves in the middle of the request
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"[{")
    await writer.drain()
    writer.close()
    deadline = time.monotonic() + 5
    while '"status":499' not in access_log.stream.getvalue():
        assert time.monotonic() < deadline, access_log.stream.getvalue()
        await asyncio.sleep(0.05)
        access_log.flush()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    metrics = await (await client.get("/metrics")).text()
    assert 'route="/api/v1/jobs/{jobId}/logs",status="499"' in metrics
    assert 'route="/api/v1/jobs/{jobId}/logs",status="500"' not in metrics


async def test_the_rate_limit_holds_across_instances(make_client: AppFactory, tenant: Tenant) -> None:
    limit = 20
    instances = [await make_client(rate_limit_per_s=limit), await make_client(rate_limit_per_s=limit)]
    headers = await tenant.key("jobs:read")
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    started = time.monotonic()
    responses = await asyncio.gather(*(instances[i % 2].get(url, headers=headers) for i in range(80)))
    elapsed_s = time.monotonic() - started
    admitted = sum(1 for r in responses if r.status == 200)
    # one bucket in Redis for both instances: a full bucket plus what refilled while the burst ran
    assert admitted <= limit + int(elapsed_s * limit) + 1
    assert sum(1 for r in responses if r.status == 429) == len(responses) - admitted
