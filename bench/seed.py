"""The Redis side of the benchmarks: spaces, API keys, job records and log watermarks.

Job records are cloned server-side (one Lua call per 500 jobs) from a job the running service created through
its API, so they have exactly the stored shape the service writes; key names come from `SpaceKeys`. What was
seeded is remembered in ``jlbench:*`` marker keys, written last: a Redis restart (or flush) loses the markers
with the data, and the next run seeds again. Seeded jobs are never put in the deadline or schedule indexes,
so a service with background duties on the same Redis leaves them alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from bench.dataset import Dataset
from bench.textgen import IsoClock, ulid_at
from service.stores.keyspace import SPACES, SpaceKeys
from service.stores.redis_api_keys import ApiKeyStore, key_digest

READ_SCOPES = ("jobs:read",)
RUN_SCOPES = ("jobs:create", "jobs:read", "jobs:worker")
JOB_NAMES = ("resize", "export", "send-mail", "sync-account", "render-report")
STATUS_MIX = (("completed", 70), ("pending", 12), ("running", 6), ("dead", 6), ("delivered", 3), ("killed", 3))
CLONE_BATCH = 500
PLACEHOLDER = "@"

# ARGV[1..4] job hash and events list keys as the parts before and after the job id; ARGV[5] the all-jobs zset;
# ARGV[6] the status zsets' prefix; ARGV[7] the queue zset; ARGV[8] the name queues' prefix; ARGV[9] space id;
# ARGV[10] n template fields, then n field/value pairs; then 5 per job: id, createdAt (ms), status, name, event.
CLONE_LUA = """
local nfields = tonumber(ARGV[10])
local base, names = {}, {}
for i = 0, nfields - 1 do
  base[ARGV[11 + 2 * i]] = ARGV[12 + 2 * i]
  names[#names + 1] = ARGV[11 + 2 * i]
end
local terminal = {completed = true, dead = true, killed = true}
local RESULT = '{"ok":true,"items":42,"outputs":["out/1.webp","out/2.webp"]}'
local templates = {}
-- Per status, once: the flat field/value list with the constant values set, and where each field's value sits.
local function template(status)
  if templates[status] then return templates[status] end
  local flat, pos = {}, {}
  for _, k in ipairs(names) do
    flat[#flat + 1] = k
    flat[#flat + 1] = base[k]
    pos[k] = #flat
  end
  local function const(k, v) if pos[k] then flat[pos[k]] = v end end
  const('spaceId', ARGV[9])
  const('status', status)
  for _, k in ipairs({'deliveredAt', 'startedAt', 'completedAt', 'result', 'scheduledFor'}) do const(k, '') end
  if status == 'completed' then const('result', RESULT) end
  if status == 'dead' then const('attemptNumber', base['maxRetries'] or '3') end
  templates[status] = {flat, pos}
  return templates[status]
end
local function put(f, pos, k, v) if pos[k] then f[pos[k]] = v end end
local i = 11 + 2 * nfields
while i <= #ARGV do
  local id, created, status, name, event = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local c = tonumber(created)
  local t = template(status)
  local f, pos = {unpack(t[1])}, t[2]
  put(f, pos, 'id', id)
  put(f, pos, 'name', name)
  put(f, pos, 'createdAt', created)
  local updated = created
  if status ~= 'pending' then updated = string.format('%d', c + 800); put(f, pos, 'deliveredAt', updated) end
  if status == 'running' or terminal[status] then
    updated = string.format('%d', c + 1500)
    put(f, pos, 'startedAt', updated)
  end
  if terminal[status] then updated = string.format('%d', c + 61500); put(f, pos, 'completedAt', updated) end
  put(f, pos, 'updatedAt', updated)
  redis.call('HSET', ARGV[1] .. id .. ARGV[2], unpack(f))
  redis.call('RPUSH', ARGV[3] .. id .. ARGV[4], event)
  redis.call('ZADD', ARGV[5], c, id)
  redis.call('ZADD', ARGV[6] .. status, c, id)
  if status == 'pending' then
    redis.call('ZADD', ARGV[7], c, id)
    redis.call('ZADD', ARGV[8] .. name, c, id)
  end
  i = i + 5
end
return 1
"""


@dataclass(frozen=True, slots=True)
class JobTemplate:
    fields: dict[str, str]  # the stored hash of a job created through the API
    event: dict[str, Any]  # its "created" event


@dataclass(frozen=True, slots=True)
class SeededSpace:
    space_id: str
    api_key: str
    jobs: int


def _marker(kind: str, profile: str) -> str:
    return f"jlbench:{kind}:{profile}"


async def _read_marker(redis: Redis, kind: str, profile: str) -> dict[str, Any] | None:
    raw = await redis.get(_marker(kind, profile))
    return None if raw is None else cast(dict[str, Any], orjson.loads(raw))


async def _key_valid(redis: Redis, space_id: str, api_key: str) -> bool:
    return bool(await redis.exists(SpaceKeys(space_id).api_key(key_digest(api_key))))


async def register_space(redis: Redis, space_id: str, name: str) -> None:
    """A space with a chosen id (the dataset's): what `ApiKeyStore.create_space` stores, with that id."""
    space = {"id": space_id, "name": name, "createdAt": IsoClock().iso(int(time.time() * 1000))}
    await redis.hset(SPACES, space_id, orjson.dumps(space))


async def template_of(redis: Redis, space_id: str, job_id: str) -> JobTemplate:
    keys = SpaceKeys(space_id)
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.job(job_id)))
    events = cast(list[bytes], await redis.lrange(keys.events(job_id), 0, 0))
    if not raw or not events:
        raise RuntimeError(f"template job {job_id} not found in Redis")
    return JobTemplate({k.decode(): v.decode() for k, v in raw.items()}, orjson.loads(events[0]))


async def run_space(redis: Redis, profile: str) -> SeededSpace:
    """The space the write benchmarks use (kept between runs; its jobs are created per run)."""
    marker = await _read_marker(redis, "run", profile)
    if marker is not None and await _key_valid(redis, marker["space_id"], marker["api_key"]):
        return SeededSpace(marker["space_id"], marker["api_key"], 0)
    keys = ApiKeyStore(redis)
    space = await keys.create_space(f"jlbench-run-{profile}")
    api_key, _ = await keys.create_key(space["id"], RUN_SCOPES, "bench")
    await redis.set(_marker("run", profile), orjson.dumps({"space_id": space["id"], "api_key": api_key}))
    return SeededSpace(space["id"], api_key, 0)


async def log_space(redis: Redis, dataset: Dataset, template: JobTemplate) -> SeededSpace:
    """The dataset's space: its jobs (ids and createdAt of the dataset) with ``seq`` = ``visible`` = lines."""
    marker = await _read_marker(redis, "logs", dataset.profile)
    if (
        marker is not None
        and marker["space_id"] == dataset.space_id
        and await _key_valid(redis, dataset.space_id, marker["api_key"])
    ):
        return SeededSpace(dataset.space_id, marker["api_key"], len(dataset.jobs))
    await register_space(redis, dataset.space_id, f"jlbench-logs-{dataset.profile}")
    api_key, _ = await ApiKeyStore(redis).create_key(dataset.space_id, READ_SCOPES, "bench")
    rng = random.Random(dataset.seed)
    jobs = [(job.id, job.created_ms, "completed" if rng.random() < 0.9 else "running") for job in dataset.jobs]
    await clone_jobs(redis, dataset.space_id, template, jobs, rng)
    keys = SpaceKeys(dataset.space_id)
    async with redis.pipeline(transaction=False) as pipe:
        for job in dataset.jobs:
            pipe.set(keys.log_seq(job.id), job.lines)
            pipe.set(keys.log_visible(job.id), job.lines)
        await pipe.execute()
    await redis.set(_marker("logs", dataset.profile), orjson.dumps({"space_id": dataset.space_id, "api_key": api_key}))
    return SeededSpace(dataset.space_id, api_key, len(dataset.jobs))


async def list_spaces(redis: Redis, profile: str, sizes: Sequence[int], template: JobTemplate) -> list[SeededSpace]:
    """One space per size, each holding that many jobs (a realistic status mix, createdAt over 60 days)."""
    marker = await _read_marker(redis, "lists", profile)
    if marker is not None and await _lists_intact(redis, marker, sizes):
        return [SeededSpace(s["space_id"], s["api_key"], int(s["jobs"])) for s in marker["spaces"]]
    spaces = [await _list_space(redis, profile, size, template) for size in sizes]
    document = {"spaces": [{"space_id": s.space_id, "api_key": s.api_key, "jobs": s.jobs} for s in spaces]}
    await redis.set(_marker("lists", profile), orjson.dumps(document))
    return spaces


async def _lists_intact(redis: Redis, marker: dict[str, Any], sizes: Sequence[int]) -> bool:
    spaces = marker.get("spaces", [])
    if [int(s["jobs"]) for s in spaces] != list(sizes):
        return False
    for space in spaces:
        if int(await redis.zcard(SpaceKeys(space["space_id"]).all_jobs)) != int(space["jobs"]):
            return False
        if not await _key_valid(redis, space["space_id"], space["api_key"]):
            return False
    return True


async def _list_space(redis: Redis, profile: str, size: int, template: JobTemplate) -> SeededSpace:
    keys = ApiKeyStore(redis)
    space = await keys.create_space(f"jlbench-list-{profile}-{size}")
    api_key, _ = await keys.create_key(space["id"], READ_SCOPES, "bench")
    rng = random.Random(size)
    now_ms = int(time.time() * 1000)
    statuses = [status for status, _ in STATUS_MIX]
    weights = [weight for _, weight in STATUS_MIX]
    jobs: list[tuple[str, int, str]] = []
    for status in rng.choices(statuses, weights, k=size):
        created = now_ms - int(rng.random() * 60 * 86_400_000)
        jobs.append((ulid_at(created, rng), created, status))
    await clone_jobs(redis, space["id"], template, jobs, rng)
    return SeededSpace(space["id"], api_key, size)


async def clone_jobs(
    redis: Redis,
    space_id: str,
    template: JobTemplate,
    jobs: Sequence[tuple[str, int, str]],
    rng: random.Random,
) -> None:
    """Store ``(id, createdAt ms, status)`` jobs shaped like ``template``, ``CLONE_BATCH`` per Lua call."""
    script = redis.register_script(CLONE_LUA)
    head = _clone_head(space_id, template)
    clock = IsoClock()
    for start in range(0, len(jobs), CLONE_BATCH):
        args: list[str | int] = list(head)
        for job_id, created, status in jobs[start : start + CLONE_BATCH]:
            name = JOB_NAMES[created % len(JOB_NAMES)]
            event = {
                **template.event,
                "id": ulid_at(created, rng),
                "jobId": job_id,
                "spaceId": space_id,
                "createdAt": clock.iso(created),
            }
            args += [job_id, created, status, name, orjson.dumps(event).decode()]
        await script(keys=[], args=args)


def _clone_head(space_id: str, template: JobTemplate) -> list[str | int]:
    keys = SpaceKeys(space_id)
    job_pre, job_post = keys.job(PLACEHOLDER).split(PLACEHOLDER)
    events_pre, events_post = keys.events(PLACEHOLDER).split(PLACEHOLDER)
    status_pre = keys.jobs_with_status(PLACEHOLDER).removesuffix(PLACEHOLDER)
    name_pre = keys.name_queue(PLACEHOLDER).removesuffix(PLACEHOLDER)
    assert PLACEHOLDER not in status_pre + name_pre, "status and name must end those keys"
    head: list[str | int] = [job_pre, job_post, events_pre, events_post, keys.all_jobs, status_pre, keys.queue]
    head += [name_pre, space_id, len(template.fields)]
    for field, value in template.fields.items():
        head += [field, value]
    return head
