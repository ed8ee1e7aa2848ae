"""API keys: their format, how they are presented, what is refused (missing, unknown, malformed, revoked),
that only their hash is stored, and the per-key rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, cast

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from dirty_equals import IsStr
from redis.asyncio import Redis

from service.services.auth import LEASE_TTL_S, Authenticator
from service.stores.keyspace import text
from service.stores.redis_api_keys import ApiKeyStore, AuthResult
from tests.helpers import AppFactory, Tenant, body, create_job, raw_exchange

MISSING = {"error": "Missing API key: send x-api-key or Authorization: Bearer"}
INVALID = {"error": "Invalid or revoked API key"}


async def answer(response: ClientResponse) -> tuple[int, Any]:
    return response.status, orjson.loads(await response.read())


async def test_a_key_reads_emit_space_secret(tenant: Tenant) -> None:
    api_key, record = await tenant.store.create_key(tenant.space_id, ("jobs:read",), "reader")
    assert api_key == IsStr(regex=rf"emit_{tenant.space_id}_[A-Za-z0-9_-]{{40,}}")
    assert record == {
        "keyId": IsStr(regex=r"[0-9A-HJKMNP-TV-Z]{26}"),
        "spaceId": tenant.space_id,
        "name": "reader",
        "scopes": ["jobs:read"],
        "createdAt": IsStr(regex=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
        "revokedAt": None,
    }


async def test_only_the_hash_of_a_key_is_stored(redis: Redis, tenant: Tenant) -> None:
    headers = await tenant.key("jobs:read", "jobs:create")
    api_key = headers["x-api-key"]
    secret = api_key.removeprefix(f"emit_{tenant.space_id}_")  # the secret itself may contain '_'
    assert len(secret) >= 20
    stored = b""
    names = [name async for name in redis.scan_iter(match=f"jl:{{{tenant.space_id}}}:*", count=1000)]
    names += [b"jl:spaces", b"jl:keyindex"]
    for name in names:
        stored += name + b"\n" + orjson.dumps(await dump(redis, name), default=repr) + b"\n"
    assert hashlib.sha256(api_key.encode()).hexdigest().encode() in stored  # the key's records are there ...
    assert secret.encode() not in stored  # ... but never the key itself
    assert api_key.encode() not in stored


async def dump(redis: Redis, name: bytes) -> Any:
    kind = text(await redis.type(name))
    if kind == "hash":
        return {text(k): text(v) for k, v in (await redis.hgetall(name)).items()}
    if kind == "string":
        return text(await redis.get(name) or b"")
    if kind == "list":
        return [text(v) for v in await redis.lrange(name, 0, -1)]
    if kind == "zset":
        members = cast(list[bytes], await redis.zrange(name, 0, -1))
        return [text(v) for v in members]
    return kind


async def test_every_api_call_without_a_key_is_401(client: TestClient[Any, Any], tenant: Tenant) -> None:
    job_path = "/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"
    calls = [
        ("POST", f"/api/v1/spaces/{tenant.space_id}/jobs", {"name": "n"}),
        ("GET", f"/api/v1/spaces/{tenant.space_id}/jobs", None),
        ("GET", job_path, None),
        ("GET", f"{job_path}/progress", None),
        ("POST", f"{job_path}/progress", {"percent": 1, "message": "m"}),
        ("GET", f"{job_path}/logs", None),
        ("POST", f"{job_path}/logs", {"logs": [{"message": "m"}]}),
    ]
    answers = {
        f"{method} {path}": await answer(await client.request(method, path, json=j)) for method, path, j in calls
    }
    assert answers == dict.fromkeys(answers, (401, MISSING))


async def test_unknown_malformed_and_misplaced_keys_are_401(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    api_key = admin["x-api-key"]
    unknown = f"emit_{tenant.space_id}_{'A' * 43}"
    presented: dict[str, dict[str, str]] = {
        "unknown well-formed key": {"x-api-key": unknown},
        "unknown key of an unknown space": {"x-api-key": f"emit_01ARZ3NDEKTSV4RRFFQ69G5FAV_{'A' * 43}"},
        "bare emit_": {"x-api-key": "emit_"},
        "short": {"x-api-key": "emit_x"},
        "no prefix": {"x-api-key": api_key.removeprefix("emit_")},
        "other prefix": {"x-api-key": "sk_" + api_key.removeprefix("emit_")},
        "truncated": {"x-api-key": api_key[:-1]},
        "extended": {"x-api-key": api_key + "A"},
        "lower-cased space": {"x-api-key": api_key.replace(tenant.space_id, tenant.space_id.lower())},
        "two keys": {"x-api-key": f"{api_key},{api_key}"},
        "bearer with a bad key": {"Authorization": "Bearer emit_nope"},
    }
    empty: dict[str, dict[str, str]] = {
        "Basic scheme": {"Authorization": f"Basic {api_key}"},
        "bearer without token": {"Authorization": "Bearer "},
        "key without scheme": {"Authorization": api_key},
    }
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    answers = {
        case: await answer(await client.get(path, headers=headers)) for case, headers in {**presented, **empty}.items()
    }
    assert answers == {**dict.fromkeys(presented, (401, INVALID)), **dict.fromkeys(empty, (401, MISSING))}


async def test_a_key_is_accepted_as_bearer_token(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    api_key = admin["x-api-key"]
    path = f"/api/v1/jobs/{job['id']}"
    expected = await body(await client.get(path, headers=admin), 200)
    answers = [
        await answer(await client.get(path, headers={"Authorization": authorization}))
        for authorization in (f"Bearer {api_key}", f"bearer {api_key}", f"Bearer  {api_key} ")
    ]
    assert answers == [(200, expected)] * 3


async def test_a_revoked_key_is_401_and_other_keys_of_the_space_still_work(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    revoked_key, record = await tenant.store.create_key(tenant.space_id, ("jobs:read",), "to revoke")
    kept = await tenant.key("jobs:read")
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    assert await answer(await client.get(path, headers={"x-api-key": revoked_key})) == (200, [])

    assert await tenant.store.revoke_key(record["keyId"]) is True
    await asyncio.sleep(LEASE_TTL_S)  # an instance may serve from its token lease until it lapses
    answers = [
        await answer(await client.get(path, headers={"x-api-key": revoked_key})),
        await answer(await client.get(path, headers={"Authorization": f"Bearer {revoked_key}"})),
        await answer(await client.get(path, headers=kept)),
    ]
    assert answers == [(401, INVALID), (401, INVALID), (200, [])]


async def test_a_burst_beyond_the_rate_limit_is_429_with_retry_after(make_client: AppFactory, tenant: Tenant) -> None:
    client = await make_client(rate_limit_per_s=5)
    bursting = await tenant.key("jobs:read")
    neighbour = await tenant.key("jobs:read")
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"

    responses = [await client.get(path, headers=bursting) for _ in range(10)]
    statuses = [response.status for response in responses]
    # The bucket holds 5 tokens and refills at 5 per second: the first five pass, the burst is then refused.
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:], statuses
    limited = next(response for response in responses if response.status == 429)
    assert await answer(limited) == (429, {"error": IsStr(regex=r"(?i).*rate limit.*")})
    assert limited.headers["Retry-After"] == IsStr(regex=r"[1-9][0-9]*")
    assert limited.content_type == "application/json"

    # Another key of the same space has its own bucket.
    assert await answer(await client.get(path, headers=neighbour)) == (200, [])

    # The bucket refills: within the announced wait the limited key passes again.
    deadline = time.monotonic() + int(limited.headers["Retry-After"]) + 1
    while (await client.get(path, headers=bursting)).status == 429:
        assert time.monotonic() < deadline, "the rate-limited key never recovered"
        await asyncio.sleep(0.05)


async def test_a_key_of_bytes_that_are_not_text_is_401(client: TestClient[Any, Any]) -> None:
    assert client.port is not None
    for header in (b"x-api-key: emit_\xff\xfe", b"Authorization: Bearer \xff\xfe\x80"):
        request = b"GET /api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
        status, payload = await raw_exchange(client.port, request + header + b"\r\n\r\n")
        assert (status, orjson.loads(payload)) == (401, INVALID)


@pytest.mark.parametrize("rate_limit_per_s", [20, 1000])
async def test_concurrent_requests_of_one_key_are_each_answered_once_promptly(
    make_client: AppFactory, tenant: Tenant, rate_limit_per_s: int
) -> None:
    """Waves of concurrent calls of one key: leases renewed under contention never spin, never overdraw."""
    client = await make_client(rate_limit_per_s=rate_limit_per_s)
    headers = await tenant.key("jobs:read")
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    started = time.monotonic()
    admitted = 0
    for _ in range(5):
        wave = await asyncio.wait_for(asyncio.gather(*(client.get(path, headers=headers) for _ in range(100))), 10)
        statuses = [response.status for response in wave]
        assert set(statuses) <= {200, 429}
        admitted += statuses.count(200)
    elapsed_s = time.monotonic() - started
    assert admitted >= min(500, rate_limit_per_s)  # at least a full bucket got through
    assert admitted <= rate_limit_per_s * (1 + elapsed_s) + 1  # and never more than the bucket allows


class SlowKeyStore(ApiKeyStore):
    """The real store, answering after a delay: Redis failing over, or restarting with a big dataset."""

    def __init__(self, redis: Redis, delay_s: float) -> None:
        super().__init__(redis)
        self.delay_s = delay_s
        self.calls = 0

    async def authenticate(self, api_key: str, rate_limit_per_s: int, wanted_tokens: int = 1) -> AuthResult:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return await super().authenticate(api_key, rate_limit_per_s, wanted_tokens)


async def test_a_redis_slower_than_a_lease_still_admits_with_one_renewal(redis: Redis, tenant: Tenant) -> None:
    keys = SlowKeyStore(redis, delay_s=LEASE_TTL_S * 1.2)
    authenticator = Authenticator(keys, rate_limit_per_s=1000)
    api_key = (await tenant.key("jobs:read"))["x-api-key"]
    principals = await asyncio.wait_for(asyncio.gather(*(authenticator.admit(api_key) for _ in range(10))), 5)
    assert {principal.space_id for principal in principals} == {tenant.space_id}
    assert keys.calls == 1
