"""Callback deliveries in Redis, so they survive restarts and are sent by one instance at a time.

Keys owned (under the space's hash tag): ``…:callbacks`` (zset jobId → time the next attempt is due; written by
the lifecycle scripts when a job with a callbackUrl ends) and ``…:callback:<jobId>`` (hash: attempts made).
Taking a delivery moves its due time past the attempt's timeout: an instance that dies mid-delivery only
delays it, and another instance sends it once that lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from service.domain.jobs import Job
from service.stores.keyspace import SpaceKeys, text
from service.stores.redis_cache import ReadCache

# KEYS[1] callbacks zset   KEYS[2] attempts hash   KEYS[3] job hash
# ARGV[1] job id   ARGV[2] now (ms)   ARGV[3] lease end (ms)
# → {} not due (or taken by another instance) | {attempt, job hash as a flat array}
TAKE_LUA = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return {} end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
local attempt = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
return {attempt, redis.call('HGETALL', KEYS[3])}
"""

# KEYS[1] callbacks zset   KEYS[2] attempts hash   KEYS[3] events list
# ARGV[1] job id   ARGV[2] next attempt due (ms), '' when the delivery is over   ARGV[3] event JSON ('' = none)
SETTLE_LUA = """
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
end
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[3]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    attempt: int
    job: Job


class CallbackStore:
    def __init__(self, redis: Redis, cache: ReadCache) -> None:
        self._redis = redis
        self._cache = cache  # settling records an event: the cached Get Job of that job is dropped
        self._take = redis.register_script(TAKE_LUA)
        self._settle = redis.register_script(SETTLE_LUA)

    async def due(self, space_id: str, now: int, limit: int) -> list[str]:
        found = cast(
            list[bytes], await self._redis.zrangebyscore(SpaceKeys(space_id).callbacks, "-inf", now, start=0, num=limit)
        )
        return [text(job_id) for job_id in found]

    async def take(self, space_id: str, job_id: str, now: int, lease_end: int) -> Delivery | None:
        keys = SpaceKeys(space_id)
        reply: Any = await self._take(
            keys=[keys.callbacks, keys.callback(job_id), keys.job(job_id)], args=[job_id, now, lease_end]
        )
        if not reply:
            return None
        return Delivery(int(reply[0]), Job.from_flat(reply[1]))

    async def settle(self, space_id: str, job_id: str, next_due: int | None, event: bytes | None) -> None:
        keys = SpaceKeys(space_id)
        settling = self._settle(
            keys=[keys.callbacks, keys.callback(job_id), keys.events(job_id)],
            args=[job_id, "" if next_due is None else next_due, event or b""],
        )
        await self._cache.writing((keys.events(job_id),), settling)
