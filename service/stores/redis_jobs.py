"""Job records, their events, listing indexes and latest progress in Redis.

Keys written here, all under the space's hash tag (see `keyspace.SpaceKeys`) but the last:
  ``…:job:<jobId>``           hash: the stored job, `domain.jobs.Job` (flat strings; JSON kept as text)
  ``…:job:<jobId>:events``    list: event JSON, oldest first
  ``…:job:<jobId>:progress``  string: ``{"progress": …, "timestamp": …}`` of the latest report
  ``…:jobs``                  zset: every job by createdAt (ms)
  ``…:jobs:<status>``         zset: jobs in that status by createdAt (ms) — a job is in exactly one
  ``…:queue``                 zset: pending jobs by the time they became available
  ``…:queue:name:<name>``     zset: pending jobs of that name, scored like ``…:queue`` (polls with a names filter)
  ``…:scheduled``             zset: scheduled jobs by scheduledFor
  ``…:deadlines``             zset: delivered/running jobs by ack or execution deadline (a progress report moves
                              a running job's deadline on)
  ``jl:due-spaces``           global zset: spaceId → earliest time something may be due there, a hint for the
                              background sweep; `JobStore.create` lowers it for scheduled jobs, outside the
                              space's transaction (a single-key command)
Lifecycle transitions live in `redis_transitions`; they use the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from service.domain.clock import iso_from_ms, new_id, now_ms
from service.domain.errors import JobNotFound, WrongState
from service.domain.jobs import TERMINAL_STATUSES, Job, NewJob, event_record, lua_set
from service.stores.keyspace import DUE_SPACES, SpaceKeys, text
from service.stores.redis_cache import ReadCache

# KEYS[1] job hash   KEYS[2] progress key   KEYS[3] deadlines zset
# ARGV[1] job id   ARGV[2] progress record JSON   ARGV[3] now (ms)
# → job status after the update ('' when the job does not exist); terminal jobs are left unchanged
SET_PROGRESS_LUA = (
    lua_set("TERMINAL", TERMINAL_STATUSES)
    + """
local job = redis.call('HMGET', KEYS[1], 'status', 'timeoutSeconds')
local status = job[1]
if not status then return '' end
if TERMINAL[status] then return status end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[3])
if status == 'running' then
  redis.call('ZADD', KEYS[3], 'XX', tonumber(ARGV[3]) + tonumber(job[2]) * 1000, ARGV[1])
end
return status
"""
)


# Reads as one script call: a single command costs less client work than a two-command pipeline.
# KEYS[1] job hash   KEYS[2] events list   → {} no such job | {job hash as a flat array, events}
GET_JOB_LUA = """
local job = redis.call('HGETALL', KEYS[1])
if #job == 0 then return {} end
return {job, redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS[1] job hash   KEYS[2] progress key   → {} no such job | {record or false}
GET_PROGRESS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {redis.call('GET', KEYS[2])}
"""


class JobStore:
    """Get Job and Get Progress are served through ``cache`` (see `redis_cache`): writes here drop their keys."""

    def __init__(self, redis: Redis, cache: ReadCache) -> None:
        self._redis = redis
        self._cache = cache
        self._set_progress = redis.register_script(SET_PROGRESS_LUA)
        self._get_job = redis.register_script(GET_JOB_LUA)
        self._get_progress = redis.register_script(GET_PROGRESS_LUA)

    async def create(self, space_id: str, jobs: Sequence[NewJob]) -> list[dict[str, Any]]:
        """Create all jobs in one MULTI on the space's slot: all of them exist afterwards, or none."""
        keys = SpaceKeys(space_id)
        created_ms = now_ms()
        created: list[Job] = []
        async with self._redis.pipeline(transaction=True) as tx:
            for new in jobs:
                job = Job.created(new_id(), space_id, new, created_ms)
                job_id, status = job.id, job.status
                created.append(job)
                tx.hset(keys.job(job_id), mapping=cast(Mapping[Any, Any], job.to_hash()))
                tx.zadd(keys.all_jobs, {job_id: created_ms})
                tx.zadd(keys.jobs_with_status(status), {job_id: created_ms})
                tx.rpush(keys.events(job_id), event_record(new_id(), job_id, space_id, "created", None, created_ms))
                if job.scheduled_for_ms is not None:
                    scheduled = {"scheduledFor": iso_from_ms(job.scheduled_for_ms)}
                    tx.rpush(
                        keys.events(job_id),
                        event_record(new_id(), job_id, space_id, "scheduled", scheduled, created_ms),
                    )
                    tx.zadd(keys.scheduled, {job_id: job.scheduled_for_ms})
                else:
                    tx.zadd(keys.queue, {job_id: created_ms})
                    tx.zadd(keys.name_queue(job.name), {job_id: created_ms})
            await tx.execute()
        scheduled_ms = [job.scheduled_for_ms for job in jobs if job.scheduled_for_ms is not None]
        if scheduled_ms:  # a hint for the background sweep (a global key: outside the space's transaction)
            await self._redis.zadd(DUE_SPACES, {space_id: min(scheduled_ms)}, lt=True)
        return [job.view(detailed=True) for job in created]

    async def names(self, space_id: str, job_ids: Iterable[str]) -> dict[str, str]:
        """job id → name, for those of ``job_ids`` the space still has (one round trip, one slot)."""
        keys = SpaceKeys(space_id)
        wanted = list(dict.fromkeys(job_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in wanted:
                pipe.hget(keys.job(job_id), "name")
            replies = await pipe.execute()
        return {
            job_id: bytes(reply).decode() for job_id, reply in zip(wanted, replies, strict=True) if reply is not None
        }

    async def get(self, space_id: str, job_id: str) -> dict[str, Any]:
        """The job with its events (Get Job); `JobNotFound` when the space has no such job."""
        keys = SpaceKeys(space_id)
        cache_keys = (keys.job(job_id), keys.events(job_id))

        async def load() -> dict[str, Any]:
            reply = await self._get_job(keys=cache_keys)
            if not reply:
                raise JobNotFound()
            flat, raw_events = reply
            view = Job.from_flat(flat).view(detailed=True)
            view["events"] = [orjson.Fragment(event) for event in raw_events]
            return view

        return await self._cache.read(cache_keys[0], cache_keys, load)

    async def list(self, space_id: str, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Newest createdAt first: one ZREVRANGE on the index, then one pipelined read of the page."""
        keys = SpaceKeys(space_id)
        index = keys.jobs_with_status(status) if status else keys.all_jobs
        job_ids = cast(list[bytes], await self._redis.zrevrange(index, offset, offset + limit - 1))
        if not job_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(keys.job(text(job_id)))
            raw_jobs = await pipe.execute()
        return [Job.from_hash(raw).view() for raw in raw_jobs if raw]

    async def set_progress(self, space_id: str, job_id: str, progress: dict[str, Any]) -> dict[str, Any]:
        keys = SpaceKeys(space_id)
        timestamp_ms = now_ms()
        record = {"jobId": job_id, "progress": progress, "timestamp": iso_from_ms(timestamp_ms)}
        setting = self._set_progress(
            keys=[keys.job(job_id), keys.progress(job_id), keys.deadlines],
            args=[job_id, orjson.dumps(record), timestamp_ms],
        )
        status = await self._cache.writing((keys.job(job_id), keys.progress(job_id)), setting)
        status = text(status)
        if not status:
            raise JobNotFound()
        if status in TERMINAL_STATUSES:
            raise WrongState(f"Job is {status}; progress can only be reported before it ends")
        return record

    async def get_progress(self, space_id: str, job_id: str) -> Any:
        keys = SpaceKeys(space_id)
        cache_keys = (keys.job(job_id), keys.progress(job_id))

        async def load() -> Any:
            reply = await self._get_progress(keys=cache_keys)
            if not reply:
                raise JobNotFound()
            record = reply[0]
            if not record:  # Lua turns a missing value into false, which arrives as None
                return {"jobId": job_id, "progress": None, "timestamp": None}
            return orjson.Fragment(record)

        return await self._cache.read(cache_keys[1], cache_keys, load)
