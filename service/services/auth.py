"""Admitting callers: API key → principal, and the per-key rate limit, with tokens leased from Redis.

Every request must take a token from its key's bucket in Redis (so the limit holds across instances), but
asking Redis on every request costs a round trip. An instance therefore leases a few tokens at a time
(``rate/20``, at most 50) together with the key's principal, and spends them locally for at most
``LEASE_TTL_S``. The bucket can never be overdrawn; a revoked key stops working within ``LEASE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from service.domain.errors import RateLimited, Unauthorized
from service.stores.redis_keys import KeyStore, Principal

LEASE_TTL_S = 1.0
MAX_LEASE_TOKENS = 50
MAX_CACHED_KEYS = 10_000


@dataclass(slots=True)
class Lease:
    principal: Principal
    tokens: int
    expires_at: float


class Authenticator:
    def __init__(self, keys: KeyStore, rate_limit_per_s: int) -> None:
        self._keys = keys
        self._rate_limit_per_s = rate_limit_per_s
        self._lease_tokens = max(1, min(MAX_LEASE_TOKENS, rate_limit_per_s // 20))
        self._leases: dict[str, Lease] = {}
        self._renewing: dict[str, asyncio.Lock] = {}

    async def admit(self, api_key: str) -> Principal:
        """The caller behind ``api_key``; `Unauthorized` (401) or `RateLimited` (429) otherwise."""
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        principal = self._spend(digest)
        if principal is not None:
            return principal
        # Concurrent requests of one key renew its lease once, not once each (which would drain the bucket).
        async with self._renewing.setdefault(digest, asyncio.Lock()):
            return self._spend(digest) or await self._renew(api_key, digest)

    def _spend(self, digest: str) -> Principal | None:
        lease = self._leases.get(digest)
        if lease is not None and lease.tokens > 0 and lease.expires_at > time.monotonic():
            lease.tokens -= 1
            return lease.principal
        return None

    async def _renew(self, api_key: str, digest: str) -> Principal:
        now = time.monotonic()
        result = await self._keys.authenticate(api_key, self._rate_limit_per_s, self._lease_tokens)
        if result.principal is None:
            self._leases.pop(digest, None)
            raise Unauthorized("Invalid or revoked API key")
        if result.retry_after_ms:
            raise RateLimited(-(-result.retry_after_ms // 1000))
        if len(self._leases) >= MAX_CACHED_KEYS:
            self._leases.clear()
            self._renewing = {digest: self._renewing[digest]}
        self._leases[digest] = Lease(result.principal, result.granted_tokens - 1, now + LEASE_TTL_S)
        return result.principal
