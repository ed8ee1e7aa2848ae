"""Retention in Redis: removing finished jobs with every key of theirs, and what deciding on a log index needs.

Keys owned (besides removing the per-job keys of `keyspace.SpaceKeys` that `redis_jobs`, `redis_transitions`,
`redis_callbacks` and `redis_logseq` write):
  ``jl:retention:turn``              global string: the id of the instance whose turn it is to run a retention pass,
                                     expiring when the next pass is due (touched by single-key commands only, so it
                                     lives in a slot of its own on a cluster)
  ``jl:retention:index:<name>``      global string, expiring: the instance deleting that log index now (Elasticsearch
                                     acknowledges two concurrent deletions of one index alike: this decides which
                                     one counts)
  ``jl:{<spaceId>}:retention:months`` hash ``YYYY.MM`` → the latest finish time (ms) of the space's jobs created in
                                     that month, recorded once none of them is alive (a fact that cannot change
                                     afterwards but by removals, which only lower it: a safe upper bound)

A job goes in one script on its space's slot (`PURGE_LUA`), which re-checks everything the caller saw: so two
instances removing at once never both remove, nor count, the same job, and a job that changed meanwhile stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import Redis

from service.domain.jobs import JOB_STATUSES, NON_TERMINAL_STATUSES, TERMINAL_STATUSES, lua_set
from service.stores.keyspace import SPACES, SpaceKeys, text
from service.stores.redis_cache import ReadCache

TURN = "jl:retention:turn"
INDEX_CLAIM_PREFIX = "jl:retention:index:"


def months_key(keys: SpaceKeys) -> str:
    """The space's ``retention:months`` hash (see the module docstring)."""
    return f"{keys.prefix}:retention:months"


# What became of one job: 'removed'; 'due' (a dry run: it would have been removed); or why it stays: 'gone'
# (removed already, by another instance), 'alive' (not terminal), 'recent' (finished after the cutoff),
# 'callback' (its callback is still to be delivered), 'writing' (an append holds an unexpired lease on its log).
Outcome = Literal["removed", "due", "gone", "alive", "recent", "callback", "writing"]

_SHARED_KEYS = 6 + len(JOB_STATUSES)
_JOB_KEYS = 11

# KEYS  1 all jobs   2 queue   3 scheduled   4 deadlines   5 callbacks   6 logs to clean
#       7.. the status indexes, in the order of `JOB_STATUSES`
#       then 11 per job: hash, events, progress, seq, visible, durable, inflight, done, abandoned, callback
#       attempts, the queue of the job's name
# ARGV  1 cutoff (ms): a job that finished after it stays   2 '1' remove, '0' only judge (a dry run)   3.. job ids
# → one `Outcome` per job, in order
PURGE_LUA = (
    lua_set("TERMINAL", TERMINAL_STATUSES)
    + f"local SHARED, PER_JOB = {_SHARED_KEYS}, {_JOB_KEYS}\n"
    + """
local cutoff, apply = tonumber(ARGV[1]), ARGV[2] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function unlist(job_id, name_queue)
  for k = 1, SHARED do
    if k ~= 5 then redis.call('ZREM', KEYS[k], job_id) end  -- 5: a job with a callback due is never removed
  end
  redis.call('ZREM', name_queue, job_id)
end

local function judge(job_id, base)
  local job = redis.call('HMGET', KEYS[base + 1], 'status', 'completedAt', 'updatedAt')
  if not job[1] then return 'gone' end
  if not TERMINAL[job[1]] then return 'alive' end
  -- completedAt is set by every terminal transition; updatedAt stands in for a record that lacks it
  local finished = tonumber(job[2] ~= '' and job[2] or job[3] or '')
  if not finished or finished > cutoff then return 'recent' end
  if redis.call('ZSCORE', KEYS[5], job_id) then return 'callback' end
  -- a writer inside its lease would recreate the log counters when it finishes: wait until it has
  if redis.call('ZCOUNT', KEYS[base + 7], now, '+inf') > 0 then return 'writing' end
  return 'due'
end

local outcomes = {}
for i = 3, #ARGV do
  local job_id, base = ARGV[i], SHARED + (i - 3) * PER_JOB
  local outcome = judge(job_id, base)
  if apply and (outcome == 'due' or outcome == 'gone') then
    if outcome == 'due' then
      -- A read window another instance keeps depends on the log keys only, and deleting a key that does not
      -- exist announces nothing: writing the watermark first makes Redis announce its removal to every cache.
      redis.call('SET', KEYS[base + 5], '0')
      redis.call('DEL', unpack(KEYS, base + 1, base + PER_JOB - 1))
      outcome = 'removed'
    end
    unlist(job_id, KEYS[base + PER_JOB])  -- a job gone meanwhile: its index entries, if any were left, go too
  end
  outcomes[#outcomes + 1] = outcome
end
return outcomes
"""
)

# KEYS[1] the turn   ARGV[1] this instance's token   ARGV[2] how long the turn lasts (ms)
# → 1 the turn is (still) this instance's and now lasts that long, 0 another instance has it
HOLD_TURN_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class MonthCensus:
    """What one space says about its jobs created in one month."""

    alive: bool  # one of them has not ended
    jobs: int
    latest_finish_ms: int | None  # recorded by an earlier check (`remember_month`), if any


class RetentionStore:
    """Removals go through ``cache.writing``: this instance drops its copies at once, and Redis announces the
    deleted keys to every other instance's cache."""

    def __init__(self, redis: Redis, cache: ReadCache) -> None:
        self._redis = redis
        self._cache = cache
        self._purge = redis.register_script(PURGE_LUA)
        self._hold_turn = redis.register_script(HOLD_TURN_LUA)

    async def spaces(self) -> list[str]:
        return [text(space_id) for space_id in await self._redis.hkeys(SPACES)]

    async def finished_candidates(
        self, space_id: str, status: str, created_by_ms: int, offset: int, limit: int
    ) -> list[str]:
        """Jobs with ``status`` created by ``created_by_ms``, oldest first, from ``offset``: a job finished after
        it was created, so every job finished by then is among them."""
        found = await self._redis.zrangebyscore(
            SpaceKeys(space_id).jobs_with_status(status), "-inf", created_by_ms, start=offset, num=limit
        )
        return [text(job_id) for job_id in cast(list[bytes], found)]

    async def purge(self, space_id: str, job_ids: Sequence[str], finished_by_ms: int, *, apply: bool) -> list[Outcome]:
        """Remove (``apply``) or only judge each of ``job_ids``: atomically per job, all on the space's slot."""
        if not job_ids:
            return []
        keys = SpaceKeys(space_id)
        names = await self._names(keys, job_ids)
        script_keys = [
            keys.all_jobs,
            keys.queue,
            keys.scheduled,
            keys.deadlines,
            keys.callbacks,
            keys.logs_to_clean,
            *(keys.jobs_with_status(status) for status in JOB_STATUSES),
        ]
        for job_id in job_ids:
            script_keys += _job_keys(keys, job_id, names.get(job_id, ""))
        purging = self._purge(keys=script_keys, args=[finished_by_ms, "1" if apply else "0", *job_ids])
        if apply:
            replies: list[Any] = await self._cache.writing(script_keys[_SHARED_KEYS:], purging)
        else:
            replies = await purging
        return [cast(Outcome, text(reply)) for reply in replies]

    async def _names(self, keys: SpaceKeys, job_ids: Sequence[str]) -> dict[str, str]:
        """job id → name (it names the job's queue key), for the jobs that still exist."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "name")
            found = await pipe.execute()
        return {job_id: text(name) for job_id, name in zip(job_ids, found, strict=True) if name is not None}

    async def month_census(self, space_ids: Sequence[str], month: str, start_ms: int, end_ms: int) -> list[MonthCensus]:
        """For each space, in one round trip: about its jobs created in [start_ms, end_ms) (``month``)."""
        window = (start_ms, f"({end_ms}")
        alive_statuses = [status for status in JOB_STATUSES if status in NON_TERMINAL_STATUSES]
        async with self._redis.pipeline(transaction=False) as pipe:
            for space_id in space_ids:
                keys = SpaceKeys(space_id)
                for status in alive_statuses:
                    pipe.zrangebyscore(keys.jobs_with_status(status), *window, start=0, num=1)
                pipe.zcount(keys.all_jobs, *window)
                pipe.hget(months_key(keys), month)
            replies = await pipe.execute()
        per_space = len(alive_statuses) + 2
        census = []
        for at in range(0, len(replies), per_space):
            *alive, jobs, latest = replies[at : at + per_space]
            census.append(MonthCensus(any(alive), int(jobs), None if latest is None else int(latest)))
        return census

    async def latest_finish(self, space_id: str, start_ms: int, end_ms: int, batch: int) -> int | None:
        """The latest finish time of the space's jobs created in [start_ms, end_ms), read in batches (0 if none);
        None if one of them has not ended, or the set changed while it was read (a concurrent removal: a batch
        may then have missed a job)."""
        keys = SpaceKeys(space_id)
        window = (start_ms, f"({end_ms}")
        expected = int(await self._redis.zcount(keys.all_jobs, *window))
        latest, seen = 0, 0
        while seen < expected:
            job_ids = [
                text(job_id)
                for job_id in cast(
                    list[bytes], await self._redis.zrangebyscore(keys.all_jobs, *window, start=seen, num=batch)
                )
            ]
            if not job_ids:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(keys.job(job_id), ["status", "completedAt", "updatedAt"])
                records = await pipe.execute()
            for status, completed, updated in records:
                if status is None:
                    continue  # removed since the batch was read: the count below tells
                if text(status) not in TERMINAL_STATUSES:
                    return None
                latest = max(latest, int(completed or updated or 0))
            seen += len(job_ids)
        if seen != expected or int(await self._redis.zcount(keys.all_jobs, *window)) != expected:
            return None
        return latest

    async def remember_month(self, space_id: str, month: str, latest_finish_ms: int) -> None:
        await self._redis.hset(months_key(SpaceKeys(space_id)), month, str(latest_finish_ms))

    async def forget_month(self, space_ids: Sequence[str], month: str) -> None:
        """The month's index is gone: what was recorded for it serves nothing any more."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for space_id in space_ids:
                pipe.hdel(months_key(SpaceKeys(space_id)), month)
            await pipe.execute()

    async def claim_index(self, index: str, token: str, hold_ms: int) -> bool:
        """Make deleting ``index`` this instance's for ``hold_ms`` (longer than a deletion takes), unless another
        instance's claim holds. A claim is never given back: once the index is gone it is not asked about again,
        and if the deletion failed, the index is tried again once the claim lapsed."""
        return bool(await self._redis.set(INDEX_CLAIM_PREFIX + index, token, nx=True, px=hold_ms))

    async def take_turn(self, token: str, hold_ms: int) -> bool:
        """Make the next pass this instance's, unless another instance's turn has not lapsed."""
        return bool(await self._redis.set(TURN, token, nx=True, px=hold_ms))

    async def hold_turn(self, token: str, hold_ms: int) -> bool:
        """Keep this instance's turn for ``hold_ms`` more; False if it lapsed and another instance has it now."""
        return int(await self._hold_turn(keys=[TURN], args=[token, hold_ms])) == 1


def _job_keys(keys: SpaceKeys, job_id: str, name: str) -> list[str]:
    """A job's keys in the order `PURGE_LUA` expects. Idempotency answers (``…:idem:<digest>``) are not among
    them: they cannot be found without a scan, and expire by themselves."""
    return [
        keys.job(job_id),
        keys.events(job_id),
        keys.progress(job_id),
        keys.log_seq(job_id),
        keys.log_visible(job_id),
        keys.log_durable(job_id),
        keys.log_inflight(job_id),
        keys.log_done(job_id),
        keys.log_abandoned(job_id),
        keys.callback(job_id),
        keys.name_queue(name),
    ]
