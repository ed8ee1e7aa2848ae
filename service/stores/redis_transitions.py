"""Job lifecycle transitions in Redis: each one is a single Lua script on the space's slot.

A transition updates the job hash, the per-status indexes, the queues, the deadlines, the event list and the
callback schedule together, so a job is always in exactly one status index and two workers can never claim
the same job. Keys (under the space's hash tag, see `keyspace.SpaceKeys`) — every script receives them in the
order of `TransitionKeys` below and never builds a key itself:
  ``…:job:<jobId>`` hash, ``…:job:<jobId>:events`` list, ``…:queue`` and ``…:queue:name:<name>`` (pending jobs by
  availability time), ``…:scheduled``, ``…:deadlines`` (ack or execution deadline), ``…:callbacks`` (deliveries
  due), and the seven ``…:jobs:<status>`` indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from service.domain.clock import iso_from_ms, new_id, now_ms
from service.domain.errors import JobNotFound, WrongState
from service.domain.jobs import (
    HELD_STATUSES,
    JOB_STATUSES,
    NON_TERMINAL_STATUSES,
    TERMINAL_STATUSES,
    Job,
    describe_statuses,
    lua_set,
)
from service.stores.keyspace import DUE_SPACES, SPACES, SpaceKeys, text
from service.stores.redis_cache import ReadCache

# Shared by every transition script. KEYS layout (TransitionKeys):
#   1 job hash   2 events   3 queue   4 queue of the job's name   5 scheduled   6 deadlines   7 callbacks
#   8..14 status indexes: scheduled, pending, delivered, running, completed, dead, killed
# ARGV layout: 1 job id   2 space id   3 now (ms)   4 now (ISO)   5..7 event ids   8.. operation arguments
_FIRST_STATUS_INDEX = 8
_FUNCTIONS = (
    # the status sets and the index keys' places come from `domain.jobs`, the one definition of both
    "local INDEX = {"
    + ", ".join(f"{status}={place}" for place, status in enumerate(JOB_STATUSES, start=_FIRST_STATUS_INDEX))
    + "}\n"
    + lua_set("TERMINAL", TERMINAL_STATUSES)
    + """local space_id, now, now_iso = ARGV[2], tonumber(ARGV[3]), ARGV[4]
-- the job acted on: the poll script points these at each candidate in turn
local job_id, JOB, EVENTS, NAME_QUEUE = ARGV[1], KEYS[1], KEYS[2], KEYS[4]
local next_event = 5

local function field(name) return redis.call('HGET', JOB, name) end

local function move(from, to)
  local created = field('createdAt')
  redis.call('ZREM', KEYS[INDEX[from]], job_id)
  redis.call('ZADD', KEYS[INDEX[to]], created, job_id)
  redis.call('HSET', JOB, 'status', to, 'updatedAt', now)
end

local function event(kind, data_json)
  local id = ARGV[next_event]
  next_event = next_event + 1
  redis.call('RPUSH', EVENTS, '{"id":"' .. id .. '","jobId":"' .. job_id .. '","spaceId":"' .. space_id ..
    '","type":' .. kind .. ',"data":' .. data_json .. ',"createdAt":"' .. now_iso .. '"}')
end

local function enqueue(at)
  redis.call('ZADD', KEYS[3], at, job_id)
  redis.call('ZADD', NAME_QUEUE, at, job_id)
end

local function dequeue()
  redis.call('ZREM', KEYS[3], job_id)
  redis.call('ZREM', NAME_QUEUE, job_id)
end

-- pending → delivered; the ack deadline starts
local function claim()
  dequeue()
  move('pending', 'delivered')
  redis.call('HSET', JOB, 'deliveredAt', now)
  redis.call('ZADD', KEYS[6], now + tonumber(field('timeoutSeconds')) * 1000, job_id)
  event('"delivered"', '{"attempt":' .. field('attemptNumber') .. '}')
end

local function finish(to, result_json)
  redis.call('ZREM', KEYS[6], job_id)
  redis.call('ZREM', KEYS[5], job_id)
  dequeue()
  redis.call('HSET', JOB, 'completedAt', now)
  if result_json then redis.call('HSET', JOB, 'result', result_json) end
  if field('callbackUrl') ~= '' then redis.call('ZADD', KEYS[7], 'NX', now, job_id) end
end

-- fail or time out a delivered/running job: retry while attempts remain, else dead
local function fail(status, error_json)
  local attempt = tonumber(field('attemptNumber'))
  redis.call('ZREM', KEYS[6], job_id)
  if attempt < tonumber(field('maxRetries')) then
    move(status, 'pending')
    redis.call('HSET', JOB, 'attemptNumber', attempt + 1, 'deliveredAt', '', 'startedAt', '')
    enqueue(now)
    event('"retried"', '{"error":' .. error_json .. ',"attempt":' .. (attempt + 1) .. '}')
    return 'pending'
  end
  move(status, 'dead')
  finish('dead', nil)
  event('"dead"', '{"error":' .. error_json .. ',"attempt":' .. attempt .. '}')
  return 'dead'
end

local function reply(outcome)
  return {outcome, redis.call('HGETALL', JOB)}
end
"""
)

# Every single-job transition starts here: the job must exist; its status is read once. Then, for an operation
# with allowed states, the guard generated from them (`Operation.script`).
_PRELUDE = (
    _FUNCTIONS
    + """
if redis.call('EXISTS', JOB) == 0 then return {'missing', {}} end
local status = field('status')
"""
)

Outcome = Literal["ok", "not-due", "wrong"]
OperationArgs = list[str | bytes]


def _no_args() -> OperationArgs:
    return []


@dataclass(frozen=True, slots=True)
class Operation:
    """One transition: what a 409 calls it, the states it may start from, its Lua and how its arguments become
    ARGV[8..]. A script answers ``'ok'``, ``'wrong:<status>'`` (the guard) or ``'not-due'`` (sweep operations)."""

    action: str
    allowed: frozenset[str] | None  # None: no guard, the script decides (the sweep's operations)
    body: str
    encode: Callable[..., OperationArgs] = _no_args

    @property
    def script(self) -> str:
        if self.allowed is None:
            return _PRELUDE + self.body
        guard = lua_set("ALLOWED", self.allowed) + "if not ALLOWED[status] then return reply('wrong:' .. status) end\n"
        return _PRELUDE + guard + self.body

    def wrong_state(self, status: str) -> WrongState:
        allowed = describe_statuses(self.allowed or frozenset())
        return WrongState(f"Job is {status}; {self.action} requires a {allowed} job")


# pending → delivered; the ack deadline starts.
CLAIM = Operation("claim", frozenset({"pending"}), "claim()\nreturn reply('ok')\n")

# delivered → running; the execution deadline starts.
ACK = Operation(
    "ack",
    frozenset({"delivered"}),
    """
move('delivered', 'running')
redis.call('HSET', JOB, 'startedAt', now)
redis.call('ZADD', KEYS[6], now + tonumber(field('timeoutSeconds')) * 1000, job_id)
event('"started"', '{"attempt":' .. field('attemptNumber') .. '}')
return reply('ok')
""",
)

# running: the execution deadline becomes now + timeoutSeconds.
KEEPALIVE = Operation(
    "keepalive",
    frozenset({"running"}),
    """
redis.call('ZADD', KEYS[6], now + tonumber(field('timeoutSeconds')) * 1000, job_id)
redis.call('HSET', JOB, 'updatedAt', now)
return reply('ok')
""",
)

# ARGV[8] event type (JSON string)   ARGV[9] data JSON   ARGV[10] '1' = a checkpoint: also resets the deadline
# of a running job. Events (custom ones too) are recorded while the job lives, not once it has ended.
_EVENT_BODY = """
if ARGV[10] == '1' and status == 'running' then
  redis.call('ZADD', KEYS[6], now + tonumber(field('timeoutSeconds')) * 1000, job_id)
end
event(ARGV[8], ARGV[9])
redis.call('HSET', JOB, 'updatedAt', now)
return reply('ok')
"""


def _checkpoint_args(data_json: bytes) -> OperationArgs:
    return [b'"checkpoint"', data_json, "1"]


def _event_args(kind: str, data_json: bytes) -> OperationArgs:
    return [orjson.dumps(kind), data_json, "0"]


CHECKPOINT = Operation("checkpoint", NON_TERMINAL_STATUSES, _EVENT_BODY, _checkpoint_args)
EVENT = Operation("event", NON_TERMINAL_STATUSES, _EVENT_BODY, _event_args)


def _json_args(value_json: bytes) -> OperationArgs:
    return [value_json]


# running → completed.   ARGV[8] result JSON
COMPLETE = Operation(
    "complete",
    frozenset({"running"}),
    """
move('running', 'completed')
finish('completed', ARGV[8])
event('"completed"', ARGV[8])
return reply('ok')
""",
    _json_args,
)

# delivered/running → pending (retry) or dead.   ARGV[8] error JSON
FAIL = Operation("fail", HELD_STATUSES, "fail(status, ARGV[8])\nreturn reply('ok')\n", _json_args)


def _kill_args(reason: str | None) -> OperationArgs:
    return [orjson.dumps(reason)]


# any non-terminal → killed.   ARGV[8] reason JSON (string or null)
KILL = Operation(
    "kill",
    NON_TERMINAL_STATUSES,
    """
move(status, 'killed')
finish('killed', nil)
event('"killed"', '{"reason":' .. ARGV[8] .. '}')
return reply('ok')
""",
    _kill_args,
)

# A due deadline: a delivered job not acked goes back to pending; a running one is failed with a `timeout`
# event. Acts only when the deadline is really due, so each deadline is handled once whoever runs the sweep.
TIMEOUT = Operation(
    "timeout",
    None,
    """
local due = redis.call('ZSCORE', KEYS[6], job_id)
if not due or tonumber(due) > now then return reply('not-due') end
if status == 'delivered' then
  redis.call('ZREM', KEYS[6], job_id)
  move('delivered', 'pending')
  redis.call('HSET', JOB, 'deliveredAt', '')
  enqueue(now)
  event('"timeout"', '{"reason":"not acknowledged within timeoutSeconds","attempt":' .. field('attemptNumber') .. '}')
  return reply('ok')
end
if status == 'running' then
  event('"timeout"', '{"reason":"no progress, checkpoint or keepalive within timeoutSeconds","attempt":' ..
    field('attemptNumber') .. '}')
  fail('running', '"timeout"')
  return reply('ok')
end
redis.call('ZREM', KEYS[6], job_id)
return reply('not-due')
""",
)

# A scheduled job whose time has come becomes pending, available since its scheduledFor.
PROMOTE = Operation(
    "promote",
    None,
    """
local due = redis.call('ZSCORE', KEYS[5], job_id)
if status ~= 'scheduled' or not due or tonumber(due) > now then return reply('not-due') end
redis.call('ZREM', KEYS[5], job_id)
move('scheduled', 'pending')
enqueue(tonumber(due))
return reply('ok')
""",
)

OPERATIONS = (CLAIM, ACK, KEEPALIVE, CHECKPOINT, EVENT, COMPLETE, FAIL, KILL, TIMEOUT, PROMOTE)

# Poll: claim the first ARGV[8] candidates (oldest first) that are still pending, in one step. Candidates are
# read just before; a few more than wanted are passed, so candidates a concurrent poller took are made up for.
# Candidate i: ARGV[7+2i] job id, ARGV[8+2i] its event id; KEYS[12+3i..14+3i] its hash, events, name queue
# (KEYS 1, 2 and 4 are the first candidate's, as in every transition).   → the claimed jobs' hashes
POLL_LUA = (
    _FUNCTIONS
    + """
local wanted, claimed, i = tonumber(ARGV[8]), {}, 1
while #claimed < wanted and ARGV[7 + 2 * i] do
  job_id, next_event = ARGV[7 + 2 * i], 8 + 2 * i
  JOB, EVENTS, NAME_QUEUE = KEYS[12 + 3 * i], KEYS[13 + 3 * i], KEYS[14 + 3 * i]
  if field('status') == 'pending' then
    claim()
    claimed[#claimed + 1] = redis.call('HGETALL', JOB)
  end
  i = i + 1
end
return claimed
"""
)

MAX_KNOWN_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class Transition:
    outcome: Outcome
    job: Job  # as the script left it (unchanged unless the outcome is 'ok')


class TransitionStore:
    def __init__(self, redis: Redis, cache: ReadCache) -> None:
        self._redis = redis
        self._cache = cache  # transitions drop the cached copies of the jobs they change
        self._names: dict[tuple[str, str], str] = {}
        self._scripts = {operation.action: redis.register_script(operation.script) for operation in OPERATIONS}
        self._poll = redis.register_script(POLL_LUA)

    async def job_name(self, space_id: str, job_id: str) -> str:
        """A job's name — it names the job's queue key; `JobNotFound` if there is no such job. Names never change
        and job ids are never reused, so a name once read is kept (a worker's calls then need no extra trip)."""
        known = self._names.get((space_id, job_id))
        if known is not None:
            return known
        name = await self._redis.hget(SpaceKeys(space_id).job(job_id), "name")
        if name is None:
            raise JobNotFound()
        if len(self._names) >= MAX_KNOWN_NAMES:
            del self._names[next(iter(self._names))]  # the oldest
        self._names[(space_id, job_id)] = found = text(name)
        return found

    async def run(self, operation: Operation, space_id: str, job_id: str, name: str, *values: Any) -> Transition:
        """Run one transition on one job, ``values`` being what ``operation.encode`` takes; `JobNotFound` when the
        job is gone."""
        keys = SpaceKeys(space_id)
        running = self._scripts[operation.action](
            keys=transition_keys(keys, job_id, name),
            args=[job_id, space_id, *clock_args(), *operation.encode(*values)],
        )
        return _transition(await self._cache.writing((keys.job(job_id), keys.events(job_id)), running))

    async def run_many(
        self, operation: Operation, space_id: str, jobs: Sequence[tuple[str, str]]
    ) -> list[Transition | None]:
        """The same argument-less transition (the sweep's) for several (jobId, name) pairs in one round trip; None
        where the job is gone."""
        keys = SpaceKeys(space_id)
        script = self._scripts[operation.action]
        changed = [key for job_id, _ in jobs for key in (keys.job(job_id), keys.events(job_id))]
        replies = await self._cache.writing(changed, self._run_each(script, keys, space_id, jobs))
        return [None if text(r[0]) == "missing" else _transition(r) for r in replies]

    async def _run_each(
        self, script: AsyncScript, keys: SpaceKeys, space_id: str, jobs: Sequence[tuple[str, str]]
    ) -> list[Any]:
        if not isinstance(self._redis, RedisCluster):
            return await self._pipelined(script, keys, space_id, jobs)
        # The cluster client refuses scripts in a pipeline (it could not load them first, and a replica that a
        # failover promoted has none: Redis 7 does not replicate SCRIPT LOAD). One call each, which loads the
        # script where it is missing; the sweep's batches are small and run in the background.
        return [
            await script(keys=transition_keys(keys, job_id, name), args=[job_id, space_id, *clock_args()])
            for job_id, name in jobs
        ]

    async def _pipelined(
        self, script: AsyncScript, keys: SpaceKeys, space_id: str, jobs: Sequence[tuple[str, str]]
    ) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, name in jobs:
                await script(
                    keys=transition_keys(keys, job_id, name), args=[job_id, space_id, *clock_args()], client=pipe
                )
            replies: list[Any] = await pipe.execute()
            return replies

    async def claim_oldest(self, space_id: str, candidates: Sequence[tuple[str, str]], wanted: int) -> list[Transition]:
        """Claim the first ``wanted`` of ``candidates`` (oldest first) that are still pending, atomically."""
        if not candidates:
            return []
        keys = SpaceKeys(space_id)
        first_job, first_name = candidates[0]
        script_keys = transition_keys(keys, first_job, first_name)
        script_args: list[str | int] = [first_job, space_id, *clock_args(), wanted]
        for job_id, name in candidates:
            script_keys += (keys.job(job_id), keys.events(job_id), keys.name_queue(name))
            script_args += (job_id, new_id())
        changed = [key for job_id, _ in candidates for key in (keys.job(job_id), keys.events(job_id))]
        replies = await self._cache.writing(changed, self._poll(keys=script_keys, args=script_args))
        return [_transition([b"ok", flat]) for flat in replies]

    async def pending_candidates(self, space_id: str, names: Sequence[str], count: int) -> list[tuple[str, str]]:
        """The oldest pending (jobId, name) pairs, optionally only of ``names``; candidates, not claims."""
        keys = SpaceKeys(space_id)
        if not names:
            job_ids = [text(j) for j in cast(list[bytes], await self._redis.zrange(keys.queue, 0, count - 1))]
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(keys.job(job_id), "name")
                found = await pipe.execute()
            return [(job_id, text(name)) for job_id, name in zip(job_ids, found, strict=True) if name is not None]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrange(keys.name_queue(name), 0, count - 1, withscores=True)
            per_name = await pipe.execute()
        merged = sorted(
            (float(score), text(job_id), name)
            for name, entries in zip(names, per_name, strict=True)
            for job_id, score in entries
        )
        return [(job_id, name) for _, job_id, name in merged[:count]]

    async def due(self, space_id: str, now: int, limit: int) -> tuple[list[str], list[str]]:
        """Job ids whose deadline passed, and scheduled job ids whose time came."""
        keys = SpaceKeys(space_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.deadlines, "-inf", now, start=0, num=limit)
            pipe.zrangebyscore(keys.scheduled, "-inf", now, start=0, num=limit)
            deadlines, scheduled = await pipe.execute()
        return [text(j) for j in deadlines], [text(j) for j in scheduled]

    async def hint_due(self, space_id: str, at_ms: int) -> None:
        """Ask the sweep to look at this space by ``at_ms`` (keeps an earlier hint)."""
        await self._redis.zadd(DUE_SPACES, {space_id: at_ms}, lt=True)

    async def spaces_to_sweep(self, now: int, limit: int, everything: bool) -> list[str]:
        """Spaces hinted as due by ``now`` — or, for the periodic safety-net pass, every space."""
        if everything:
            return [text(s) for s in await self._redis.hkeys(SPACES)]
        found = await self._redis.zrangebyscore(DUE_SPACES, "-inf", now, start=0, num=limit)
        return [text(s) for s in cast(list[bytes], found)]

    async def rehint(self, space_id: str) -> None:
        """Set the space's hint to its earliest deadline, scheduled time or callback, or drop it if none.

        Not atomic (the hints live in one global key, outside the space's slot), so a concurrent writer's
        hint could be overwritten with a later time. Writers add their due time first and hint after; reading
        the due times again after writing the hint therefore sees every addition whose own hint came before."""
        first = await self._earliest_due(space_id)
        if first is None:
            await self._redis.zrem(DUE_SPACES, space_id)
        else:
            await self._redis.zadd(DUE_SPACES, {space_id: first})
        again = await self._earliest_due(space_id)
        if again is not None and (first is None or again < first):
            await self.hint_due(space_id, again)

    async def _earliest_due(self, space_id: str) -> int | None:
        keys = SpaceKeys(space_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for zset in (keys.deadlines, keys.scheduled, keys.callbacks):
                pipe.zrange(zset, 0, 0, withscores=True)
            firsts = await pipe.execute()
        return min((int(entries[0][1]) for entries in firsts if entries), default=None)

    async def names_of(self, space_id: str, job_ids: Sequence[str]) -> list[tuple[str, str]]:
        keys = SpaceKeys(space_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "name")
            found = await pipe.execute()
        return [(job_id, text(name)) for job_id, name in zip(job_ids, found, strict=True) if name is not None]


def transition_keys(keys: SpaceKeys, job_id: str, name: str) -> list[str]:
    return [
        keys.job(job_id),
        keys.events(job_id),
        keys.queue,
        keys.name_queue(name),
        keys.scheduled,
        keys.deadlines,
        keys.callbacks,
        *(keys.jobs_with_status(status) for status in JOB_STATUSES),
    ]


def clock_args() -> list[str]:
    """now (ms), now (ISO) and three fresh event ids — a script records at most three events."""
    moment = now_ms()
    return [str(moment), iso_from_ms(moment), new_id(), new_id(), new_id()]


def _transition(reply: Any) -> Transition:
    outcome = text(reply[0])
    if outcome == "missing":
        raise JobNotFound()
    kind, _, _ = outcome.partition(":")
    return Transition(cast(Outcome, kind), Job.from_flat(reply[1]))
