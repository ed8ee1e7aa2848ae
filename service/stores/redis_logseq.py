"""Per-job log sequence numbers and the visibility watermark, in Redis.

Keys owned (all under the space's hash tag, see `keyspace.SpaceKeys`):
  ``…:job:<jobId>:seq``          last seq reserved
  ``…:job:<jobId>:inflight``     zset ``first:last`` → lease expiry (ms): ranges being written
  ``…:job:<jobId>:done``         zset ``first:last`` → first: finished (or abandoned) ranges above the watermark
  ``…:job:<jobId>:visible``      the watermark: every seq <= it is searchable in Elasticsearch or abandoned
  ``…:job:<jobId>:durable``      the durability watermark (see `SpaceKeys.log_durable`)
  ``…:job:<jobId>:abandoned``    zset ``first:last`` → first: ranges whose append failed or whose lease expired
  ``…:job:<jobId>:idem:<sha>``   ``pending:<bodySha>`` or ``done:<bodySha>:<answer JSON>`` per Idempotency-Key
  ``…:logs:to-clean``            zset jobId → time of its latest abandoned range (the janitor's queue, per space)
  ``…:job:<jobId>:live``         sharded pub/sub channel (SPUBLISH): the durability watermark, from an append's finish

Why: concurrent writers make lines searchable out of seq order. A tailer reading ``seq > N`` must never get
past a seq that is still being written, or it would skip it forever. Writers reserve a range, index it (durable,
not yet searchable) and then mark it finished; the durability watermark advances only over a contiguous run of
finished ranges. Readers see up to the visibility watermark, which a read raises to the durability watermark it
read before a refresh of the index that began after (`LogService`), so every line they see is searchable. A
range whose writer died is abandoned when its lease expires, so the watermarks never stall for long.
Reads exclude abandoned ranges: whatever part of a failed append reached Elasticsearch (a bulk cut short, a slow
writer finishing after its lease) is never shown, so a line is returned only if its append was acknowledged.
A janitor removes those lines from the index once the range has been abandoned for a while, and only then
forgets the range, so the ranges readers must exclude stay few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.typing import EncodableT

from service.domain.errors import JobNotFound, WrongState
from service.stores.keyspace import SpaceKeys, text
from service.stores.redis_cache import ReadCache
from service.stores.redis_replication import ReplicaWait

# Shared by FINISH and WATERMARK: abandon expired leases, then move the durability watermark over contiguous done
# ranges. Expects KEYS[1] inflight, KEYS[2] done, KEYS[3] durable, KEYS[5] abandoned, KEYS[6] the space's
# logs-to-clean zset, KEYS[7] visible (what durable starts from for a log older than the durable key); returns
# the new durability watermark.
_ADVANCE = """
local function bounds(range)
  return tonumber(string.match(range, '^(%d+):')), tonumber(string.match(range, ':(%d+)$'))
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Mark a range finished for the watermark and record it as abandoned, merged with adjacent abandoned ranges
-- (an outage abandons many ranges in a row: they stay one entry, so reads exclude them all). The job is due
-- for the janitor, which removes whatever lines of the range reached the index.
local function abandon(range, job_id)
  redis.call('ZADD', KEYS[6], now_ms(), job_id)
  local first, last = bounds(range)
  redis.call('ZADD', KEYS[2], first, range)
  local before = redis.call('ZREVRANGEBYSCORE', KEYS[5], '(' .. first, '-inf', 'LIMIT', 0, 1)[1]
  if before then
    local before_first, before_last = bounds(before)
    if before_last == first - 1 then
      redis.call('ZREM', KEYS[5], before)
      first = before_first
    end
  end
  local after = redis.call('ZRANGEBYSCORE', KEYS[5], last + 1, last + 1, 'LIMIT', 0, 1)[1]
  if after then
    redis.call('ZREM', KEYS[5], after)
    local _, after_last = bounds(after)
    last = after_last
  end
  redis.call('ZADD', KEYS[5], first, first .. ':' .. last)
end

local function advance(job_id)
  for _, range in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms())) do
    redis.call('ZREM', KEYS[1], range)
    abandon(range, job_id)
  end
  local durable = tonumber(redis.call('GET', KEYS[3]) or redis.call('GET', KEYS[7]) or '0')
  local moved = false
  while true do
    local lowest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if not lowest[1] or tonumber(lowest[2]) > durable + 1 then break end
    local _, last = bounds(lowest[1])
    if last > durable then durable = last end
    redis.call('ZREM', KEYS[2], lowest[1])
    moved = true
  end
  if moved then redis.call('SET', KEYS[3], durable) end
  return durable
end
"""

# KEYS[1] job hash   KEYS[2] seq counter   KEYS[3] inflight zset   KEYS[4] idempotency key (or a dummy)
# ARGV[1] line count   ARGV[2] lease (ms)   ARGV[3] '1' when an idempotency key is in use   ARGV[4] body sha256
# The 'pending' marker lives as long as the lease: if the writer dies, a retry may proceed once it lapses.
# → {0} no such job | {2, stored} idempotency key already used | {1, first, last, job createdAt, job name}
RESERVE_LUA = """
local job = redis.call('HMGET', KEYS[1], 'createdAt', 'name')
local created = job[1]
if not created then return {0} end
if ARGV[3] == '1' then
  local previous = redis.call('GET', KEYS[4])
  if previous then return {2, previous} end
  redis.call('SET', KEYS[4], 'pending:' .. ARGV[4], 'PX', ARGV[2])
end
local count = tonumber(ARGV[1])
local last = redis.call('INCRBY', KEYS[2], count)
local first = last - count + 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), first .. ':' .. last)
return {1, first, last, created, job[2] or ''}
"""

# KEYS[1] inflight   KEYS[2] done   KEYS[3] durable   KEYS[4] idempotency key (or a dummy)   KEYS[5] abandoned
# KEYS[6] logs to clean   KEYS[7] visible
# ARGV[1] range 'first:last'   ARGV[2] first   ARGV[3] idempotency value to keep ('' = the append failed)
# ARGV[4] how long to keep the answer for the idempotency key (s); 0 when no key is in use
# ARGV[5] 'show' = readers may show the range (the append succeeded, or its seqs hold older lines), else abandon
# ARGV[6] job id   ARGV[7] the job's live channel: the new durability watermark is published there (a wake-up for
# live streams, in the same round trip)
# → {1, durable} finished in time | {0, durable} the lease had expired: the range was abandoned
FINISH_LUA = (
    _ADVANCE
    + """
local held = redis.call('ZREM', KEYS[1], ARGV[1])
if held == 1 then
  if ARGV[5] == 'show' then redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[1]) else abandon(ARGV[1], ARGV[6]) end
end
if ARGV[4] ~= '0' then
  if held == 1 and ARGV[3] ~= '' then
    redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[4])
  else
    redis.call('DEL', KEYS[4])
  end
end
local durable = advance(ARGV[6])
if held == 1 and ARGV[5] == 'show' then redis.call('SPUBLISH', ARGV[7], durable) end
return {held, durable}
"""
)

# KEYS[1] seq counter   KEYS[2] done   ARGV[1] the highest seq stored in Elasticsearch
# The counter fell behind the index (Redis lost writes): move it past what is stored, and let the watermark
# cross the seqs skipped over (they hold lines acknowledged before the loss).   → the counter
CATCH_UP_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local stored = tonumber(ARGV[1])
if stored <= current then return current end
redis.call('SET', KEYS[1], stored)
redis.call('ZADD', KEYS[2], current + 1, (current + 1) .. ':' .. stored)
return stored
"""

# KEYS[1] abandoned   KEYS[2] logs to clean   ARGV[1] job id   ARGV[2] the job's score when the janitor read it
# ARGV[3..] the ranges whose lines it removed. If anything was abandoned since, nothing is forgotten this time.
CLEANED_LUA = """
local flagged = redis.call('ZSCORE', KEYS[2], ARGV[1])
-- a range abandoned since the janitor looked may have merged into those it read, and its grace has not passed
if flagged and tonumber(flagged) > tonumber(ARGV[2]) then return 0 end
for i = 3, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS[1] inflight   KEYS[2] done   KEYS[3] durable   KEYS[4] job hash   KEYS[5] abandoned   KEYS[6] logs to clean
# KEYS[7] visible   ARGV[1] how many abandoned ranges to return at most   ARGV[2] job id
# → {} no such job | {durable, job createdAt, abandoned ranges (newest first), ranges still in flight, visible}
WATERMARK_LUA = (
    _ADVANCE
    + """
local created = redis.call('HGET', KEYS[4], 'createdAt')
if not created then return {} end
local durable = advance(ARGV[2])
local abandoned = redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[1]) - 1, 'REV')
return {durable, created, abandoned, redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[7]) or '0')}
"""
)

# KEYS[1] visible   ARGV[1] a durability watermark read before a refresh that has since finished began: every
# seq up to it is searchable now.   → the visibility watermark (it only grows)
REVEAL_LUA = """
local visible = tonumber(redis.call('GET', KEYS[1]) or '0')
local searchable = tonumber(ARGV[1])
if searchable <= visible then return visible end
redis.call('SET', KEYS[1], searchable)
return searchable
"""


# Reads filter out at most this many (the newest) abandoned ranges of a job; failures are rare, and older
# abandoned ranges were cleaned from the index by their writers in all but the rarest cases.
MAX_ABANDONED_RANGES = 100


@dataclass(frozen=True, slots=True)
class Reservation:
    first_seq: int
    last_seq: int
    job_created_ms: int
    job_name: str  # written beside each line: a search across jobs filters and shows it without Redis

    @property
    def member(self) -> str:
        return f"{self.first_seq}:{self.last_seq}"


@dataclass(frozen=True, slots=True)
class SeqState:
    """A consistent snapshot of a job's counters, for deciding that its log has ended."""

    reserved_seq: int  # last seq handed out
    visible_seq: int
    in_flight: int  # ranges being written

    @property
    def settled(self) -> bool:
        return self.in_flight == 0 and self.reserved_seq == self.visible_seq


@dataclass(frozen=True, slots=True)
class ReadWindow:
    visible_seq: int  # what readers may show
    durable_seq: int  # what is acknowledged; above visible_seq until a refresh makes it searchable
    job_created_ms: int
    abandoned: tuple[tuple[int, int], ...]  # (first, last) seq ranges never to show
    writes_in_flight: bool  # while ranges are leased, time alone (a lease expiring) can move the watermark


class LogSeqStore:
    """A quiet job's read window is kept in ``cache`` (see `redis_cache`): with nothing in flight, only a write
    can change it, and writes are announced. An older window is still a safe one: the watermark only grows."""

    def __init__(self, redis: Redis, cache: ReadCache, replica_wait: ReplicaWait | None = None) -> None:
        self._redis = redis
        self._cache = cache
        self._replica_wait = replica_wait or ReplicaWait(redis, 0, 1.0)
        self._reserve = redis.register_script(RESERVE_LUA)
        self._finish = redis.register_script(FINISH_LUA)
        self._watermark = redis.register_script(WATERMARK_LUA)
        self._catch_up = redis.register_script(CATCH_UP_LUA)
        self._cleaned = redis.register_script(CLEANED_LUA)
        self._reveal = redis.register_script(REVEAL_LUA)

    async def reserve(
        self,
        space_id: str,
        job_id: str,
        count: int,
        lease_ms: int,
        idempotency_digest: str | None,
        body_digest: str,
    ) -> Reservation | bytes:
        """Reserve ``count`` seqs under a lease; returns the stored answer when the idempotency key was used."""
        keys = SpaceKeys(space_id)
        reserving = self._reserve(
            keys=[
                keys.job(job_id),
                keys.log_seq(job_id),
                keys.log_inflight(job_id),
                keys.idempotency(job_id, idempotency_digest or "-"),
            ],
            args=[count, lease_ms, 1 if idempotency_digest else 0, body_digest],
        )
        reply = await self._cache.writing(_window_keys(keys, job_id), reserving)
        outcome = int(reply[0])
        if outcome == 0:
            raise JobNotFound()
        if outcome == 2:
            return _stored_answer(bytes(reply[1]), body_digest)
        return Reservation(int(reply[1]), int(reply[2]), int(reply[3]), bytes(reply[4]).decode())

    async def finish(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        idempotency_digest: str | None,
        idempotency_ttl_s: int,
        body_digest: str,
        answer: bytes | None,
        *,
        show: bool | None = None,
    ) -> tuple[bool, int]:
        """Mark a range finished (``answer`` set) or failed. Readers show it (``show``, by default when there is an
        answer) or never will. Returns whether it was still held (False: its lease had expired and readers
        abandoned it) and the durability watermark afterwards."""
        keys = SpaceKeys(space_id)
        kept = b"" if answer is None else b"done:" + body_digest.encode() + b":" + answer
        shown = answer is not None if show is None else show
        script_keys = [
            keys.log_inflight(job_id),
            keys.log_done(job_id),
            keys.log_durable(job_id),
            keys.idempotency(job_id, idempotency_digest or "-"),
            keys.log_abandoned(job_id),
            keys.logs_to_clean,
            keys.log_visible(job_id),
        ]
        script_args: list[EncodableT] = [
            reservation.member,
            reservation.first_seq,
            kept,
            idempotency_ttl_s if idempotency_digest else 0,
            "show" if shown else "abandon",
            job_id,
            keys.log_live(job_id),
        ]
        # An answered append is acknowledged on the strength of this write: a replica must hold it too.
        finishing = (
            self._replica_wait.run(self._finish, script_keys, script_args)
            if answer is not None
            else self._finish(keys=script_keys, args=script_args)
        )
        reply = await self._cache.writing(_window_keys(keys, job_id), finishing)
        return int(reply[0]) == 1, int(reply[1])

    async def catch_up(self, space_id: str, job_id: str, stored_seq: int) -> int:
        """Move the job's seq counter past ``stored_seq`` if it is behind (see CATCH_UP_LUA); the counter."""
        keys = SpaceKeys(space_id)
        catching_up = self._catch_up(keys=[keys.log_seq(job_id), keys.log_done(job_id)], args=[stored_seq])
        return int(await self._cache.writing(_window_keys(keys, job_id), catching_up))

    async def reveal(self, space_id: str, job_id: str, searchable_seq: int) -> int:
        """Every seq up to ``searchable_seq`` is searchable now (a durability watermark read before a refresh
        that since finished began): raise the visibility watermark to it. Returns the visibility watermark."""
        keys = SpaceKeys(space_id)
        revealing = self._reveal(keys=[keys.log_visible(job_id)], args=[searchable_seq])
        return int(await self._cache.writing(_window_keys(keys, job_id), revealing))

    async def seq_state(self, space_id: str, job_id: str) -> SeqState:
        """Seq counter, watermark and ranges in flight, read in one transaction (one slot). Call `read_window`
        first: it moves the watermark over expired leases."""
        keys = SpaceKeys(space_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.log_seq(job_id))
            pipe.get(keys.log_visible(job_id))
            pipe.zcard(keys.log_inflight(job_id))
            reserved, visible, in_flight = await pipe.execute()
        return SeqState(int(reserved or 0), int(visible or 0), int(in_flight))

    async def jobs_to_clean(self, space_id: str, abandoned_before_ms: int, limit: int) -> list[tuple[str, int]]:
        """Jobs whose latest abandoned range is older than ``abandoned_before_ms``, with that time."""
        found = await self._redis.zrangebyscore(
            SpaceKeys(space_id).logs_to_clean, "-inf", abandoned_before_ms, start=0, num=limit, withscores=True
        )
        return [(text(job_id), int(score)) for job_id, score in cast(list[tuple[bytes, float]], found)]

    async def abandoned_ranges(self, space_id: str, job_id: str) -> tuple[int | None, list[tuple[int, int]]]:
        """The job's creation time (None if the job is gone) and every abandoned range."""
        keys = SpaceKeys(space_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.job(job_id), "createdAt")
            pipe.zrange(keys.log_abandoned(job_id), 0, -1)
            created, members = await pipe.execute()
        return (None if created is None else int(created)), [_range(text(member)) for member in members]

    async def cleaned(self, space_id: str, job_id: str, flagged_ms: int, ranges: list[tuple[int, int]]) -> bool:
        """The lines of ``ranges`` are gone from the index: readers need not exclude them any more — unless a range
        was abandoned since ``flagged_ms`` (then nothing is forgotten: False)."""
        keys = SpaceKeys(space_id)
        forgetting = self._cleaned(
            keys=[keys.log_abandoned(job_id), keys.logs_to_clean],
            args=[job_id, flagged_ms, *(f"{first}:{last}" for first, last in ranges)],
        )
        return int(await self._cache.writing(_window_keys(keys, job_id), forgetting)) == 1

    async def read_window(self, space_id: str, job_id: str) -> ReadWindow:
        """The job's watermark (advanced over expired leases) and creation time; `JobNotFound` if none."""
        keys = SpaceKeys(space_id)
        window_keys = _window_keys(keys, job_id)

        async def load() -> ReadWindow:
            inflight, done, visible, abandoned, durable = window_keys
            reply = await self._watermark(
                keys=[inflight, done, durable, keys.job(job_id), abandoned, keys.logs_to_clean, visible],
                args=[MAX_ABANDONED_RANGES, job_id],
            )
            if not reply:
                raise JobNotFound()
            ranges = tuple(_range(text(member)) for member in reply[2])
            return ReadWindow(int(reply[4]), int(reply[0]), int(reply[1]), ranges, writes_in_flight=int(reply[3]) > 0)

        # The job hash is not a dependency: only its createdAt (immutable) is read.
        return await self._cache.read(window_keys[2], window_keys, load, keep=_quiet)


def _window_keys(keys: SpaceKeys, job_id: str) -> tuple[str, str, str, str, str]:
    return (
        keys.log_inflight(job_id),
        keys.log_done(job_id),
        keys.log_visible(job_id),
        keys.log_abandoned(job_id),
        keys.log_durable(job_id),
    )


def _quiet(window: ReadWindow) -> bool:
    return not window.writes_in_flight


def _range(member: str) -> tuple[int, int]:
    first, _, last = member.partition(":")
    return int(first), int(last)


def _stored_answer(stored: bytes, body_digest: str) -> bytes:
    state, _, rest = stored.partition(b":")
    if state == b"pending":
        raise WrongState("A request with this Idempotency-Key is still in progress; retry later")
    # rest = b"<bodySha>:<answer JSON>" — the answer is only given back for the same body.
    digest, _, answer = rest.partition(b":")
    if digest.decode() != body_digest:
        raise WrongState("This Idempotency-Key was already used with a different body")
    return answer
