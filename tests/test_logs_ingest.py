"""POST /jobs/:jobId/logs: body forms, defaults, validation, limits and idempotent retries."""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.stores.redis_cache import ReadCache
from service.stores.redis_logseq import LogSeqStore
from tests.helpers import AppFactory, Tenant, body, create_job
from tests.logs_helpers import append, page, seqs
from tests.matchers import ANY_ISO_TIME, ANY_ULID


@pytest.fixture
async def job_id(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> str:
    job = await create_job(client, tenant, admin)
    return str(job["id"])


async def test_envelope_is_acknowledged_with_seqs_and_defaults_are_applied(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    answer = await append(
        client,
        job_id,
        admin,
        [
            {"message": "first"},
            {
                "message": "second",
                "level": "ERROR",
                "source": "worker-a",
                "metadata": {"chunk": 12, "nested": {"ok": True}},
                "loggedAt": "2026-03-01T09:21:01.120+01:00",
            },
        ],
    )
    assert answer == {"accepted": 2, "firstSeq": 1, "lastSeq": 2}
    result = await page(client, job_id, admin, after=0)
    assert result == {
        "logs": [
            {
                "id": ANY_ULID,
                "seq": 1,
                "level": "info",
                "message": "first",
                "source": None,
                "metadata": None,
                "loggedAt": ANY_ISO_TIME,
                "createdAt": ANY_ISO_TIME,
            },
            {
                "id": ANY_ULID,
                "seq": 2,
                "level": "error",
                "message": "second",
                "source": "worker-a",
                "metadata": {"chunk": 12, "nested": {"ok": True}},
                "loggedAt": "2026-03-01T08:21:01.120Z",
                "createdAt": ANY_ISO_TIME,
            },
        ],
        "cursor": {"mode": "after", "oldestSeq": 1, "newestSeq": 2, "hasMore": False},
    }
    assert result["logs"][0]["loggedAt"] == result["logs"][0]["createdAt"]


async def test_bare_array_and_ndjson_bodies_continue_the_sequence(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", json=[{"message": "a"}], headers=admin)
    assert await body(response, 200) == {"accepted": 1, "firstSeq": 1, "lastSeq": 1}
    ndjson = b'{"message": "b"}\n\n{"message": "c", "level": "warn"}\n'
    headers = {**admin, "Content-Type": "application/x-ndjson"}
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", data=ndjson, headers=headers)
    assert await body(response, 200) == {"accepted": 2, "firstSeq": 2, "lastSeq": 3}
    result = await page(client, job_id, admin)
    assert [(line["seq"], line["message"], line["level"]) for line in result["logs"]] == [
        (1, "a", "info"),
        (2, "b", "info"),
        (3, "c", "warn"),
    ]


def nested(levels: int) -> Any:
    """An object ``levels`` deep: {"a": [[…[]…]]}."""
    value: Any = []
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


TOO_DEEP = "logs[1].metadata is nested too deeply: at most 251 levels"


async def test_metadata_as_deep_as_a_read_can_show_is_stored_and_read_back(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    await append(client, job_id, admin, [{"message": "deep", "metadata": nested(251)}])
    assert [line["metadata"] for line in (await page(client, job_id, admin))["logs"]] == [nested(251)]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([{"message": "ok"}, {"level": "info"}], "logs[1].message is required: a string of at most 32768 bytes"),
        ([{"message": "ok"}, {"message": 5}], "logs[1].message is required: a string of at most 32768 bytes"),
        ([{"message": "x" * 32769}], "logs[0].message is required: a string of at most 32768 bytes"),
        # counted in UTF-8 bytes: 10,923 three-byte characters are 32,769 bytes
        ([{"message": "€" * 10_923}], "logs[0].message is required: a string of at most 32768 bytes"),
        ([{"message": "ok", "level": "loud"}], "logs[0].level must be one of trace, debug, info, warn, error, fatal"),
        ([{"message": "ok", "source": 3}], "logs[0].source must be a string of at most 256 characters"),
        ([{"message": "ok", "metadata": [1]}], "logs[0].metadata must be an object"),
        (
            [{"message": "ok", "loggedAt": "yesterday"}],
            "logs[0].loggedAt must be an ISO-8601 time with a zone in years 0001-9999",
        ),
        (
            [{"message": "ok", "loggedAt": "2026-01-01T00:00:00"}],
            "logs[0].loggedAt must be an ISO-8601 time with a zone in years 0001-9999",
        ),
        (
            [{"message": "ok", "seq": 7}],
            "logs[0].seq is not a log line field; allowed: level, loggedAt, message, metadata, source",
        ),
        (["just text"], "logs[0] must be an object with a message"),
        ([{"message": "ok"}, {"message": "deep", "metadata": nested(252)}], TOO_DEEP),
        ([], "logs must hold at least one line"),
    ],
)
async def test_a_bad_line_is_named_and_nothing_is_stored(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, lines: list[Any], error: str
) -> None:
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", json={"logs": lines}, headers=admin)
    assert await body(response, 400) == {"error": error}
    assert (await append(client, job_id, admin, [{"message": "next"}]))["firstSeq"] == 1


@pytest.mark.parametrize(
    ("raw", "content_type", "error"),
    [
        (b"{not json", "application/json", "body is not valid JSON"),
        (b"", "application/json", "body must be JSON, got an empty body"),
        (b'{"lines": []}', "application/json", 'body must be {"logs": [...]}, an array of log lines, or NDJSON'),
        (b'{"message": "a"}\n{oops\n', "application/x-ndjson", "logs[1] (NDJSON line 2) is not valid JSON"),
        (
            b'{"message": "a"}\n\n{oops\n',
            "application/x-ndjson",
            "logs[1] (NDJSON line 3) is not valid JSON",
        ),
        (b'{"message": "a"}\n\n{"level": "x"}\n', "application/x-ndjson", "logs[1].message is required"),
    ],
)
async def test_malformed_bodies_are_400(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, raw: bytes, content_type: str, error: str
) -> None:
    headers = {**admin, "Content-Type": content_type}
    result = await body(await client.post(f"/api/v1/jobs/{job_id}/logs", data=raw, headers=headers), 400)
    assert result["error"].startswith(error)


async def test_more_than_1000_lines_or_5_mib_is_413_and_nothing_is_stored(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    too_many = [{"message": f"line {i}"} for i in range(1001)]
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", json=too_many, headers=admin)
    assert await body(response, 413) == {"error": "logs may hold at most 1000 lines per request, got 1001"}
    ndjson = b"\n".join(orjson.dumps(line) for line in too_many)
    headers = {**admin, "Content-Type": "application/x-ndjson"}
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", data=ndjson, headers=headers)
    assert await body(response, 413) == {"error": "logs may hold at most 1000 lines per request, got more"}
    too_big = orjson.dumps([{"message": "x" * 30_000}] * 180)
    assert len(too_big) > 5 * 1024 * 1024
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", data=io.BytesIO(too_big), headers=admin)
    assert await body(response, 413) == {"error": "Request body too large: at most 5242880 bytes"}
    assert (await page(client, job_id, admin))["logs"] == []


async def test_unknown_job_is_404(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/logs", json=[{"message": "m"}], headers=admin)
    assert await body(response, 404) == {"error": "Job not found"}


async def test_idempotency_key_returns_the_first_answer_and_appends_once(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    headers = {**admin, "Idempotency-Key": "batch-42"}
    lines = [{"message": "once"}, {"message": "only"}]
    first = await body(await client.post(f"/api/v1/jobs/{job_id}/logs", json=lines, headers=headers), 200)
    retry = await body(await client.post(f"/api/v1/jobs/{job_id}/logs", json=lines, headers=headers), 200)
    assert first == retry == {"accepted": 2, "firstSeq": 1, "lastSeq": 2}
    assert seqs(await page(client, job_id, admin)) == [1, 2]

    other_body = await client.post(f"/api/v1/jobs/{job_id}/logs", json=[{"message": "different"}], headers=headers)
    assert await body(other_body, 409) == {"error": "This Idempotency-Key was already used with a different body"}
    fresh = await body(await client.post(f"/api/v1/jobs/{job_id}/logs", json=lines, headers=admin), 200)
    assert fresh == {"accepted": 2, "firstSeq": 3, "lastSeq": 4}


async def test_a_failed_append_frees_its_idempotency_key_for_the_retry(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, redis: Redis, tenant: Tenant
) -> None:
    # A writer that died mid-append leaves a 'pending' marker: it lasts only as long as the lease.
    seqs_store = LogSeqStore(redis, ReadCache(redis, max_entries=0))
    digest = hashlib.sha256(b"retry-me").hexdigest()
    await seqs_store.reserve(tenant.space_id, job_id, 1, 300, digest, hashlib.sha256(b"[]").hexdigest())
    headers = {**admin, "Idempotency-Key": "retry-me"}
    early = await client.post(f"/api/v1/jobs/{job_id}/logs", json=[{"message": "m"}], headers=headers)
    assert await body(early, 409) == {"error": "A request with this Idempotency-Key is still in progress; retry later"}
    await asyncio.sleep(0.4)
    retried = await client.post(f"/api/v1/jobs/{job_id}/logs", json=[{"message": "m"}], headers=headers)
    assert await body(retried, 200) == {"accepted": 1, "firstSeq": 2, "lastSeq": 2}


async def test_reads_after_an_answer_include_its_lines_without_the_scheduled_refresh(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    # A scheduled refresh an hour away: only the refreshes that reads ask for can make the lines searchable.
    clients = [await make_client(index_refresh_interval_s=3600), await make_client(index_refresh_interval_s=3600)]
    job_id = (await create_job(clients[0], tenant, admin))["id"]

    async def writer(n: int) -> list[int]:
        answers = [
            await append(clients[n % 2], job_id, admin, [{"message": f"w{n} b{b} l{i}"} for i in range(50)])
            for b in range(5)
        ]
        return [seq for a in answers for seq in range(a["firstSeq"], a["lastSeq"] + 1)]

    acknowledged = sorted(seq for seqs_of in await asyncio.gather(*(writer(n) for n in range(4))) for seq in seqs_of)
    assert acknowledged == list(range(1, 1001))
    # read-your-writes on either instance: every acknowledged line is there at once
    for client in clients:
        first, second = (
            await page(client, job_id, admin, after=0, limit=500),
            await page(client, job_id, admin, after=500, limit=500),
        )
        assert seqs(first) + seqs(second) == acknowledged
    solo = await append(clients[1], job_id, admin, [{"message": "one more"}])
    assert seqs(await page(clients[0], job_id, admin, after=1000)) == [solo["lastSeq"]] == [1001]


async def test_a_message_of_exactly_the_byte_limit_is_accepted(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    message = "€" * 10_922 + "xx"  # 32,768 bytes in UTF-8
    assert (await append(client, job_id, admin, [{"message": message}]))["accepted"] == 1
