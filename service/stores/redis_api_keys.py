"""Spaces and API keys in Redis.

Keys owned (see `keyspace`): ``jl:spaces``, ``jl:keyindex``, and per space ``…:apikey:<sha256>`` (hash: keyId,
name, scopes, createdAt, revokedAt), ``…:apikeys`` (hash keyId → sha256) and ``…:rl:<sha256 prefix>`` (token
bucket, see `SpaceKeys.rate_bucket`).

An API key reads ``emit_<spaceId>_<secret>``: the key names its space, so authenticating it only ever reads
that space's slot, and a key of one space cannot address another space's records. Only the SHA-256 of a key
is stored; the secret is shown once, at creation. A key is found by the digest of what was presented, so
response time reveals nothing about any stored secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from service.domain.clock import ULID_PATTERN, iso_from_ms, new_id, now_ms
from service.domain.scopes import expand
from service.stores.keyspace import KEY_INDEX, SPACES, SpaceKeys, decode_hash, text

KEY_PATTERN = re.compile(rf"emit_({ULID_PATTERN.pattern})_([A-Za-z0-9_-]{{20,100}})")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its space and the scopes it was granted (unexpanded)."""

    key_id: str
    space_id: str
    scopes: tuple[str, ...]
    allowed: frozenset[str] = field(init=False)  # the scopes with shorthands expanded, computed once per key

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", expand(self.scopes))


@dataclass(frozen=True, slots=True)
class AuthResult:
    principal: Principal | None
    granted_tokens: int = 0
    retry_after_ms: int = 0


# KEYS[1] api key hash   KEYS[2] the key's token bucket (hash tokens, ts)
# ARGV[1] rate limit per second   ARGV[2] tokens wanted (an instance leases a few at a time)
# → {0} unknown or revoked | {1, keyId, scopes, granted} allowed | {2, keyId, scopes, retryAfterMs} limited
AUTHENTICATE_LUA = """
local key = redis.call('HMGET', KEYS[1], 'keyId', 'scopes', 'revokedAt')
if not key[1] or (key[3] and key[3] ~= '') then return {0} end
local limit = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or limit
local last = tonumber(bucket[2]) or now
tokens = math.min(limit, tokens + math.max(0, now - last) * limit / 1000)
if tokens < 1 then
  return {2, key[1], key[2], math.ceil((1 - tokens) * 1000 / limit)}
end
local granted = math.min(tonumber(ARGV[2]), math.floor(tokens))
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - granted), 'ts', now)
redis.call('PEXPIRE', KEYS[2], 2000)
return {1, key[1], key[2], granted}
"""


def is_api_key_shaped(presented: str) -> bool:
    return KEY_PATTERN.fullmatch(presented) is not None


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._authenticate = redis.register_script(AUTHENTICATE_LUA)

    async def create_space(self, name: str) -> dict[str, Any]:
        space = {"id": new_id(), "name": name, "createdAt": iso_from_ms(now_ms())}
        await self._redis.hset(SPACES, space["id"], orjson.dumps(space))
        return space

    async def list_spaces(self) -> list[dict[str, Any]]:
        raw = await self._redis.hvals(SPACES)
        return sorted((orjson.loads(v) for v in raw), key=lambda s: str(s["id"]))

    async def space_exists(self, space_id: str) -> bool:
        return bool(await self._redis.hexists(SPACES, space_id))

    async def create_key(self, space_id: str, scopes: tuple[str, ...], name: str) -> tuple[str, dict[str, Any]]:
        """Returns the new key (shown once) and its stored description."""
        api_key = f"emit_{space_id}_{secrets.token_urlsafe(32)}"
        digest = key_digest(api_key)
        record = {
            "keyId": new_id(),
            "spaceId": space_id,
            "name": name,
            "scopes": ",".join(scopes),
            "createdAt": iso_from_ms(now_ms()),
            "revokedAt": "",
            "sha256": digest,
        }
        keys = SpaceKeys(space_id)
        # The global index first: a key that exists can always be found by `keys revoke`.
        await self._redis.hset(KEY_INDEX, record["keyId"], space_id)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hset(keys.api_key(digest), mapping=cast(Mapping[Any, Any], record))
            tx.hset(keys.api_keys, record["keyId"], digest)
            await tx.execute()
        return api_key, _describe(record)

    async def list_keys(self, space_id: str) -> list[dict[str, Any]]:
        keys = SpaceKeys(space_id)
        digests = await self._redis.hvals(keys.api_keys)
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(keys.api_key(text(digest)))
            records = await pipe.execute()
        return sorted((_describe(decode_hash(r)) for r in records if r), key=lambda k: str(k["keyId"]))

    async def revoke_key(self, key_id: str) -> bool:
        space_id = await self._redis.hget(KEY_INDEX, key_id)
        if space_id is None:
            return False
        keys = SpaceKeys(text(space_id))
        digest = await self._redis.hget(keys.api_keys, key_id)
        if digest is None:
            return False
        await self._redis.hset(keys.api_key(text(digest)), "revokedAt", iso_from_ms(now_ms()))
        return True

    async def authenticate(self, api_key: str, rate_limit_per_s: int, wanted_tokens: int = 1) -> AuthResult:
        """Resolve a presented key and take up to ``wanted_tokens`` from its rate bucket, in one round trip."""
        match = KEY_PATTERN.fullmatch(api_key)
        if match is None:
            return AuthResult(None)
        space_id = match.group(1)
        digest = key_digest(api_key)
        keys = SpaceKeys(space_id)
        reply = await self._authenticate(
            keys=[keys.api_key(digest), keys.rate_bucket(digest)], args=[rate_limit_per_s, wanted_tokens]
        )
        if int(reply[0]) == 0:
            return AuthResult(None)
        principal = Principal(reply[1].decode(), space_id, tuple(reply[2].decode().split(",")))
        if int(reply[0]) == 2:
            return AuthResult(principal, retry_after_ms=int(reply[3]))
        return AuthResult(principal, granted_tokens=int(reply[3]))


def _describe(record: dict[str, str]) -> dict[str, Any]:
    return {
        "keyId": record["keyId"],
        "spaceId": record["spaceId"],
        "name": record["name"],
        "scopes": record["scopes"].split(","),
        "createdAt": record["createdAt"],
        "revokedAt": record["revokedAt"] or None,
    }
