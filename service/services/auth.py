"""Admitting callers: API key → principal, and the per-key rate limit, with tokens leased from Redis.

Every request must take a token from its key's bucket in Redis (so the limit holds across instances), but
asking Redis on every request costs a round trip. An instance therefore leases a few tokens at a time
(``rate/20``, at most 50) together with the key's principal, and spends them locally for at most
``LEASE_TTL_S``. The bucket can never be overdrawn; a revoked key stops working within ``LEASE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

from service.domain.errors import RateLimited, Unauthorized
from service.stores.redis_api_keys import ApiKeyStore, Principal, is_api_key_shaped, key_digest

LEASE_TTL_S = 1.0
MAX_LEASE_TOKENS = 50
MAX_CACHED_KEYS = 10_000
MAX_RENEWALS_PER_REQUEST = 8  # a burst far beyond a lease's tokens: each renewal admits as many more
INVALID_KEY = "Invalid or revoked API key"


@dataclass(slots=True)
class Lease:
    principal: Principal
    tokens: int
    expires_at: float

    def take(self) -> bool:
        if self.tokens <= 0:
            return False
        self.tokens -= 1
        return True


class Authenticator:
    def __init__(self, keys: ApiKeyStore, rate_limit_per_s: int) -> None:
        self._keys = keys
        self._rate_limit_per_s = rate_limit_per_s
        self._lease_tokens = max(1, min(MAX_LEASE_TOKENS, rate_limit_per_s // 20))
        self._leases: dict[str, Lease] = {}
        self._renewals: dict[str, asyncio.Future[Lease]] = {}  # only while one is in flight: no growth

    async def admit(self, api_key: str) -> Principal:
        """The caller behind ``api_key``; `Unauthorized` (401) or `RateLimited` (429) otherwise."""
        if not is_api_key_shaped(api_key):  # before hashing: a header may hold anything, even undecodable bytes
            raise Unauthorized(INVALID_KEY)
        digest = key_digest(api_key)
        lease = self._leases.get(digest)
        if lease is not None and lease.expires_at > time.monotonic() and lease.take():
            return lease.principal
        # The tokens of a fresh lease go to the requests that waited for it, whatever the time; those that find
        # it spent by the others wait for the next one, a bounded number of times.
        for _ in range(MAX_RENEWALS_PER_REQUEST):
            lease = await self._renewal(api_key, digest)
            if lease.take():
                return lease.principal
        raise RateLimited(1)

    async def _renewal(self, api_key: str, digest: str) -> Lease:
        """The lease being fetched for this key, or a new fetch. Concurrent requests of one key share one (one
        each would drain the bucket); shielded, so that a caller that goes away does not cancel it for the others."""
        renewal = self._renewals.get(digest)
        if renewal is None or renewal.done():  # a done one is about to be dropped (its callback runs next turn)
            renewal = self._renewals[digest] = asyncio.ensure_future(self._renew(api_key, digest))
            renewal.add_done_callback(functools.partial(self._renewed, digest))
        return await asyncio.shield(renewal)

    def _renewed(self, digest: str, renewal: asyncio.Future[Lease]) -> None:
        if self._renewals.get(digest) is renewal:
            del self._renewals[digest]
        if not renewal.cancelled():
            renewal.exception()  # seen here too, in case every caller went away before it ended

    async def _renew(self, api_key: str, digest: str) -> Lease:
        result = await self._keys.authenticate(api_key, self._rate_limit_per_s, self._lease_tokens)
        if result.principal is None:
            self._leases.pop(digest, None)
            raise Unauthorized(INVALID_KEY)
        if result.retry_after_ms:
            raise RateLimited(-(-result.retry_after_ms // 1000))
        if len(self._leases) >= MAX_CACHED_KEYS:
            self._leases.clear()
        # Counted from the answer: however slow Redis was, a lease is born valid.
        lease = self._leases[digest] = Lease(result.principal, result.granted_tokens, time.monotonic() + LEASE_TTL_S)
        return lease
