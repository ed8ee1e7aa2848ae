"""The Redis side of the benchmarks: spaces, API keys, job records and log watermarks.

Job records are cloned (one round trip per 500 jobs) from a job the running service created through its API,
as `domain.jobs.Job` records, so they have exactly the stored shape the service writes; key names come from
`SpaceKeys`. What was
seeded is remembered in ``jlbench:*`` marker keys, written last: a Redis restart (or flush) loses the markers
with the data, and the next run seeds again. Seeded jobs are never put in the deadline or schedule indexes,
so a service with background duties on the same Redis leaves them alone.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from bench.dataset import Dataset
from bench.textgen import IsoClock, ulid_at
from service.domain.jobs import TERMINAL_STATUSES, Job
from service.stores.keyspace import SPACES, SpaceKeys
from service.stores.redis_api_keys import ApiKeyStore, key_digest

READ_SCOPES = ("jobs:read",)
RUN_SCOPES = ("jobs:create", "jobs:read", "jobs:worker")
JOB_NAMES = ("resize", "export", "send-mail", "sync-account", "render-report")
STATUS_MIX = (("completed", 70), ("pending", 12), ("running", 6), ("dead", 6), ("delivered", 3), ("killed", 3))
CLONE_BATCH = 500
# How long after its creation a seeded job was delivered, started and ended (ms).
DELIVERED_AFTER_MS, STARTED_AFTER_MS, ENDED_AFTER_MS = 800, 1500, 61_500
RESULT_JSON = '{"ok":true,"items":42,"outputs":["out/1.webp","out/2.webp"]}'


@dataclass(frozen=True, slots=True)
class JobTemplate:
    job: Job  # a job created through the API, as stored
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
    return JobTemplate(Job.from_hash(raw), orjson.loads(events[0]))


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
    """Store ``(id, createdAt ms, status)`` jobs shaped like ``template`` with their indexes, ``CLONE_BATCH`` per
    round trip. Each record is the template's `Job` with this job's values, so it has exactly the stored shape."""
    keys = SpaceKeys(space_id)
    clock = IsoClock()
    for start in range(0, len(jobs), CLONE_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, created, status in jobs[start : start + CLONE_BATCH]:
                job = _seeded_job(template.job, space_id, job_id, created, status)
                event = {**template.event, "id": ulid_at(created, rng), "jobId": job_id, "spaceId": space_id}
                event["createdAt"] = clock.iso(created)
                pipe.execute_command("HSET", keys.job(job_id), *itertools.chain.from_iterable(job.to_hash().items()))
                pipe.rpush(keys.events(job_id), orjson.dumps(event))
                pipe.zadd(keys.all_jobs, {job_id: created})
                pipe.zadd(keys.jobs_with_status(status), {job_id: created})
                if status == "pending":
                    pipe.zadd(keys.queue, {job_id: created})
                    pipe.zadd(keys.name_queue(job.name), {job_id: created})
            await pipe.execute()


def _seeded_job(template: Job, space_id: str, job_id: str, created: int, status: str) -> Job:
    """A job that reached ``status`` at plausible times after ``created`` (never in a deadline or schedule)."""
    delivered = None if status == "pending" else created + DELIVERED_AFTER_MS
    started = created + STARTED_AFTER_MS if status == "running" or status in TERMINAL_STATUSES else None
    ended = created + ENDED_AFTER_MS if status in TERMINAL_STATUSES else None
    return replace(
        template,
        id=job_id,
        space_id=space_id,
        name=JOB_NAMES[created % len(JOB_NAMES)],
        status=status,
        attempt_number=template.max_retries if status == "dead" else template.attempt_number,
        created_ms=created,
        updated_ms=ended or started or delivered or created,
        delivered_ms=delivered,
        started_ms=started,
        completed_ms=ended,
        result_json=RESULT_JSON if status == "completed" else None,
        scheduled_for_ms=None,
    )
