"""Retention: finished jobs past JOBLENS_JOB_RETENTION_DAYS go with every key and list entry of theirs; a monthly
log index goes, whole, once every job it may hold is past JOBLENS_LOG_RETENTION_DAYS. Nothing younger is touched.

Jobs are made old by creating them through the API and then moving their times in Redis (the record and the
scores of its indexes), as the years would; the index tests also pass the service a clock. The Redis database is
shared with the run's other tests: assertions look at this test's spaces and indices, and each test uses months
of its own (an index decision asks every space about its month).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.api.context import READ_CACHE
from service.app import elasticsearch_client, redis_client
from service.domain.clock import EPOCH, iso_from_ms, now_ms
from service.observability import Metrics
from service.services.retention import UNLIMITED, IndexDecision, Limits, RetentionService, SpaceJobs
from service.settings import Settings
from service.stores.es_logs import LogStore
from service.stores.keyspace import SpaceKeys, text
from service.stores.redis_cache import ReadCache
from service.stores.redis_callbacks import CallbackStore
from service.stores.redis_logseq import LogSeqStore
from service.stores.redis_retention import TURN, RetentionStore, months_key
from tests.helpers import AppFactory, Tenant, body, create_job, eventually, run_joblens
from tests.lifecycle_helpers import STEPS_TO, call, to_status
from tests.logs_helpers import append, page
from tests.matchers import NOT_FOUND

DAY_MS = 86_400_000
RETENTION_DAYS = 30
Client = TestClient[Any, Any]


def ms(moment: str) -> int:
    """Epoch ms of a UTC time written ``2011-03-01`` or ``2011-04-30T23:59:59.999``."""
    return (datetime.fromisoformat(moment).replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


def retention(
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
    metrics: Metrics,
    *,
    job_days: int = 0,
    log_days: int = 0,
    clock: Callable[[], int] = now_ms,
) -> RetentionService:
    """A retention service as another instance (or `joblens retention`) runs it: its own cache, which never
    listens — the app instances hear of removals from Redis."""
    configured = replace(settings, job_retention_days=job_days, log_retention_days=log_days)
    store = RetentionStore(redis, ReadCache(redis, max_entries=0))
    return RetentionService(store, LogStore(es, configured), configured, metrics, clock)


def removed(metrics: Metrics, what: str) -> float:
    return metrics.registry.get_sample_value(f"joblens_retention_{what}_removed_total") or 0.0


async def backdate(
    redis: Redis, space_id: str, job_id: str, *, created_ms: int | None = None, finished_ms: int | None = None
) -> None:
    """Move a job's times as if it had been created / had ended then: the record and its index scores."""
    keys = SpaceKeys(space_id)
    status = await redis.hget(keys.job(job_id), "status")
    assert status is not None, job_id
    async with redis.pipeline(transaction=True) as tx:
        if created_ms is not None:
            tx.hset(keys.job(job_id), "createdAt", created_ms)
            tx.zadd(keys.all_jobs, {job_id: created_ms}, xx=True)
            tx.zadd(keys.jobs_with_status(text(status)), {job_id: created_ms}, xx=True)
        if finished_ms is not None:
            tx.hset(keys.job(job_id), mapping={"completedAt": finished_ms, "updatedAt": finished_ms})
        await tx.execute()


async def finished_job(client: Client, headers: dict[str, str], tenant: Tenant, status: str = "completed") -> str:
    """A job that ran with progress and log lines, then ended in ``status``: it has every kind of key."""
    job_id: str = (await create_job(client, tenant, headers, maxRetries=0))["id"]
    await run_to(client, headers, job_id, status)
    return job_id


async def run_to(client: Client, headers: dict[str, str], job_id: str, status: str) -> None:
    for step in ("claim", "ack"):
        assert (await call(client, headers, job_id, step))[0] == 200
    halfway = {"percent": 50, "message": "halfway"}
    await body(await client.post(f"/api/v1/jobs/{job_id}/progress", json=halfway, headers=headers), 200)
    await append(client, job_id, headers, [{"message": "working"}, {"message": "done", "level": "warn"}])
    ending: dict[str, tuple[str, dict[str, Any]]] = {
        "completed": ("complete", {"result": {"ok": True}}),
        "dead": ("fail", {"error": "x"}),
    }
    action, payload = ending.get(status, ("kill", {}))
    assert (await call(client, headers, job_id, action, **payload))[0] == 200


async def space_keys(redis: Redis, space_id: str) -> list[bytes]:
    """Every key of the space. They share one hash slot: on a cluster, KEYS is asked of the node that holds it."""
    pattern = f"jl:{{{space_id}}}:*"
    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(pattern)
        return cast(list[bytes], await redis.keys(pattern, target_nodes=node))
    return cast(list[bytes], await redis.keys(pattern))


async def job_keys(redis: Redis, space_id: str, job_id: str) -> dict[str, bytes | None]:
    """Every key of the space that names the job, with its value (DUMP), and every sorted set that lists it, with
    its score: what "the job and everything of its own" is in Redis."""
    state: dict[str, Any] = {}
    for key in sorted(text(k) for k in await space_keys(redis, space_id)):
        if job_id in key:
            state[key] = await redis.dump(key)
        elif await redis.type(key) == b"zset" and (score := await redis.zscore(key, job_id)) is not None:
            state[f"{key} ∋ {job_id}"] = score
    return state


async def space_state(redis: Redis, space_id: str) -> dict[str, bytes | None]:
    return {text(k): await redis.dump(k) for k in sorted(await space_keys(redis, space_id))}


async def listed(client: Client, headers: dict[str, str], tenant: Tenant, status: str | None = None) -> set[str]:
    query = f"?status={status}&limit=100" if status else "?limit=100"
    jobs = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs{query}", headers=headers), 200)
    return {job["id"] for job in jobs}


async def old_month_job(
    client: Client, redis: Redis, tenant: Tenant, headers: dict[str, str], created: str, finished: str | None
) -> str:
    """A job created at ``created`` with log lines (so in that month's index), ended at ``finished`` — or still
    running if None."""
    job_id: str = (await create_job(client, tenant, headers))["id"]
    await backdate(redis, tenant.space_id, job_id, created_ms=ms(created))
    await append(client, job_id, headers, [{"message": f"a line of {created}"}])
    for step in STEPS_TO["running" if finished is None else "completed"]:
        assert (await call(client, headers, job_id, step, **({"result": 1} if step == "complete" else {})))[0] == 200
    if finished is not None:
        await backdate(redis, tenant.space_id, job_id, finished_ms=ms(finished))
    return job_id


async def log_indices(es: AsyncElasticsearch, settings: Settings) -> list[str]:
    return sorted(await es.indices.get(index=f"{settings.index_prefix}-*", allow_no_indices=True))


@pytest.fixture
async def turn_free(redis: Redis) -> AsyncIterator[None]:
    """No instance's retention turn is pending (an earlier test may have taken one), nor left for the next."""
    await redis.delete(TURN)
    yield
    await redis.delete(TURN)


async def test_finished_jobs_past_retention_go_with_every_key_and_nothing_younger_is_touched(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    now = now_ms()
    long_ago, cutoff = now - 60 * DAY_MS, now - RETENTION_DAYS * DAY_MS
    old = [await finished_job(client, admin, tenant, status) for status in ("completed", "dead", "killed")]
    recent = await finished_job(client, admin, tenant)  # created long ago, but finished inside the retention
    just_finished = await finished_job(client, admin, tenant)
    running = await to_status(client, tenant, admin, "running")  # created long ago, still alive
    pending = await to_status(client, tenant, admin, "pending")
    for job_id in old:
        await backdate(redis, tenant.space_id, job_id, created_ms=long_ago, finished_ms=cutoff - 1)
    await backdate(redis, tenant.space_id, recent, created_ms=long_ago, finished_ms=cutoff + 60_000)
    for job_id in (running, pending):
        await backdate(redis, tenant.space_id, job_id, created_ms=long_ago)
    kept = [recent, just_finished, running, pending]

    # Each old job has its record, events, progress and log counters, and is listed.
    for job_id in old:
        keys = await job_keys(redis, tenant.space_id, job_id)
        assert {key.rpartition(job_id)[2] for key in keys} >= {"", ":events", ":progress", ":seq", ":durable"}
    assert await listed(client, admin, tenant) == {*old, *kept}
    # An instance has them in its read cache.
    await eventually(lambda: client.app[READ_CACHE].live, "the read cache to listen")
    for _ in range(2):
        for job_id in old:
            await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200)
            await body(await client.get(f"/api/v1/jobs/{job_id}/progress", headers=admin), 200)
            await page(client, job_id, admin, after=0)
    assert client.app[READ_CACHE].counts.hits >= 2 * len(old)
    before = {job_id: await job_keys(redis, tenant.space_id, job_id) for job_id in kept}
    answers = {job_id: await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200) for job_id in kept}

    metrics = Metrics()
    report = await retention(redis, es, settings, metrics, job_days=RETENTION_DAYS).run_pass()

    assert report.jobs[tenant.space_id] == SpaceJobs(removed=3, kept=Counter(recent=1))
    assert removed(metrics, "jobs") == report.jobs_removed  # (other spaces of the database may have had some)
    for job_id in old:
        assert await job_keys(redis, tenant.space_id, job_id) == {}
    assert await listed(client, admin, tenant) == set(kept)
    for status in ("completed", "dead", "killed"):
        assert not await listed(client, admin, tenant, status) & set(old)
    for job_id in old:  # the instance's cache heard Redis announce the removal: it serves nothing of them
        for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/progress", f"/api/v1/jobs/{job_id}/logs"):
            await eventually(answers_404(client, path, admin), f"{path} to answer 404")
    # Nothing younger than the retention was touched: the same keys, values and scores, the same answers.
    assert {job_id: await job_keys(redis, tenant.space_id, job_id) for job_id in kept} == before
    for job_id in kept:
        assert await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200) == answers[job_id]


def answers_404(client: Client, path: str, headers: dict[str, str]) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: ``path`` answers ``404 Job not found``."""

    async def check() -> bool:
        response = await client.get(path, headers=headers)
        return response.status == 404 and await response.json() == NOT_FOUND

    return check


async def test_a_job_whose_callback_is_due_or_whose_log_is_being_written_stays_until_that_is_over(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    long_ago = now_ms() - 60 * DAY_MS
    calling = (await create_job(client, tenant, admin, callbackUrl="https://example.com/hook"))["id"]
    for step in ("claim", "ack", "complete"):
        assert (await call(client, admin, calling, step, **({"result": 1} if step == "complete" else {})))[0] == 200
    writing = await to_status(client, tenant, admin, "killed")
    for job_id in (calling, writing):
        await backdate(redis, tenant.space_id, job_id, created_ms=long_ago, finished_ms=long_ago)
    seqs = LogSeqStore(redis, ReadCache(redis, 0))
    reservation = await seqs.reserve(tenant.space_id, writing, 1, 60_000, None, "-")  # a writer inside its lease
    assert not isinstance(reservation, bytes)
    before = {job_id: await job_keys(redis, tenant.space_id, job_id) for job_id in (calling, writing)}
    service = retention(redis, es, settings, Metrics(), job_days=RETENTION_DAYS)

    report = await service.run_pass()
    assert report.jobs[tenant.space_id] == SpaceJobs(kept=Counter(callback=1, writing=1))
    assert {job_id: await job_keys(redis, tenant.space_id, job_id) for job_id in (calling, writing)} == before

    # The callback settled (given up, say) and the append over: now they go.
    await CallbackStore(redis, ReadCache(redis, 0)).settle(tenant.space_id, calling, None, None)
    await seqs.finish(tenant.space_id, writing, reservation, None, 60, "-", None)
    report = await service.run_pass()
    assert report.jobs[tenant.space_id] == SpaceJobs(removed=2)
    for job_id in (calling, writing):
        assert await job_keys(redis, tenant.space_id, job_id) == {}


async def test_an_index_goes_only_once_every_job_of_its_month_is_past_log_retention(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    # 2011.03: every job finished long ago. 2011.04: one of them finished five days ago. 2011.05: one still runs.
    march = [await old_month_job(client, redis, tenant, admin, f"2011-03-{day}", "2011-03-20") for day in ("01", "31")]
    await old_month_job(client, redis, tenant, admin, "2011-04-02", "2011-04-03")
    recent_finish = now_ms() - 5 * DAY_MS
    late = await old_month_job(client, redis, tenant, admin, "2011-04-30T23:59:59.999", "2011-05-01")
    await backdate(redis, tenant.space_id, late, finished_ms=recent_finish)
    running = await old_month_job(client, redis, tenant, admin, "2011-05-15", None)
    this_month = (await create_job(client, tenant, admin))["id"]
    await append(client, this_month, admin, [{"message": "now"}])
    prefix = settings.index_prefix
    current = f"{prefix}-{datetime.now(UTC):%Y.%m}"
    assert await log_indices(es, settings) == [f"{prefix}-2011.03", f"{prefix}-2011.04", f"{prefix}-2011.05", current]
    metrics = Metrics()
    service = retention(redis, es, settings, metrics, log_days=RETENTION_DAYS)

    report = await service.run_pass()
    assert report.indices == [
        IndexDecision(f"{prefix}-2011.03", removed=True),
        IndexDecision(
            f"{prefix}-2011.04",
            removed=False,
            reason=f"a job of space {tenant.space_id} created in 2011.04 finished at {iso_from_ms(recent_finish)}",
        ),
        IndexDecision(
            f"{prefix}-2011.05",
            removed=False,
            reason=f"space {tenant.space_id} has a job created in 2011.05 that has not ended",
        ),
    ]
    assert removed(metrics, "indices") == 1
    assert await log_indices(es, settings) == [f"{prefix}-2011.04", f"{prefix}-2011.05", current]
    assert report.jobs == {}  # job retention is off: every record stays, their lines are gone
    for job_id in march:
        await body(await client.get(f"/api/v1/jobs/{job_id}", headers=admin), 200)
        assert (await page(client, job_id, admin, after=0))["logs"] == []
    assert (await page(client, late, admin, after=0))["logs"] != []

    # The running job ends, long ago as time goes here: its month's index may go now; April's latest stays.
    assert (await call(client, admin, running, "complete", result=1))[0] == 200
    await backdate(redis, tenant.space_id, running, finished_ms=ms("2011-05-16"))
    report = await service.run_pass()
    assert [(d.index, d.removed) for d in report.indices] == [(f"{prefix}-2011.04", False), (f"{prefix}-2011.05", True)]
    assert await log_indices(es, settings) == [f"{prefix}-2011.04", current]
    assert removed(metrics, "indices") == 2
    assert await redis.hgetall(months_key(SpaceKeys(tenant.space_id))) == {b"2011.04": str(recent_finish).encode()}


async def test_an_index_stays_until_its_month_ended_more_than_the_retention_ago(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    await old_month_job(client, redis, tenant, admin, "2012-06-05", "2012-06-10")
    index = f"{settings.index_prefix}-2012.06"
    # June ended on July 1st: with 30 days of retention its index may go from July 31st, not a moment before.
    moment = [ms("2012-07-30T23:59:59.999")]
    service = retention(redis, es, settings, Metrics(), log_days=RETENTION_DAYS, clock=lambda: moment[0])

    assert (await service.run_pass()).indices == []
    assert index in await log_indices(es, settings)
    moment[0] = ms("2012-07-31")
    assert (await service.run_pass()).indices == [IndexDecision(index, removed=True)]
    assert index not in await log_indices(es, settings)


async def test_a_dry_run_shows_what_a_pass_removes_and_changes_nothing(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    old = await old_month_job(client, redis, tenant, admin, "2015-01-10", "2015-01-11")
    young = await finished_job(client, admin, tenant)
    index = f"{settings.index_prefix}-2015.01"
    state, indices = await space_state(redis, tenant.space_id), await log_indices(es, settings)
    metrics = Metrics()
    service = retention(redis, es, settings, metrics, job_days=RETENTION_DAYS, log_days=RETENTION_DAYS)

    dry = await service.run_pass(dry_run=True, limits=UNLIMITED)
    assert (dry.jobs[tenant.space_id], dry.indices) == (SpaceJobs(removed=1), [IndexDecision(index, removed=True)])
    assert await space_state(redis, tenant.space_id) == state
    assert await log_indices(es, settings) == indices
    assert (removed(metrics, "jobs"), removed(metrics, "indices")) == (0, 0)

    real = await service.run_pass(limits=UNLIMITED)
    assert (real.jobs[tenant.space_id], real.indices) == (dry.jobs[tenant.space_id], dry.indices)
    assert await job_keys(redis, tenant.space_id, old) == {}
    assert index not in await log_indices(es, settings)
    assert await job_keys(redis, tenant.space_id, young) != {}


async def test_two_instances_passing_at_once_remove_and_count_each_job_and_index_once(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    created = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "bulk"}] * 250, headers=admin)
    job_ids = [job["id"] for job in await body(created, 201)]
    for at in range(0, len(job_ids), 25):
        await asyncio.gather(*(call(client, admin, job_id, "kill") for job_id in job_ids[at : at + 25]))
    long_ago = now_ms() - 60 * DAY_MS
    for job_id in job_ids:
        await backdate(redis, tenant.space_id, job_id, created_ms=long_ago, finished_ms=long_ago)
    job_ids.append(await old_month_job(client, redis, tenant, admin, "2014-02-10", "2014-02-20"))
    instances = [(redis_client(settings), elasticsearch_client(settings), Metrics()) for _ in range(2)]
    try:
        services = [
            retention(r, e, settings, metrics, job_days=RETENTION_DAYS, log_days=RETENTION_DAYS)
            for r, e, metrics in instances
        ]
        reports = await asyncio.gather(*(service.run_pass() for service in services))
    finally:
        for other_redis, other_es, _ in instances:
            await other_redis.aclose()
            await other_es.close()

    ours = [report.jobs.get(tenant.space_id, SpaceJobs()).removed for report in reports]
    assert sum(ours) == len(job_ids)
    assert sum(removed(metrics, "jobs") for _, _, metrics in instances) == sum(r.jobs_removed for r in reports)
    assert [removed(metrics, "indices") for _, _, metrics in instances] in ([1, 0], [0, 1])
    assert f"{settings.index_prefix}-2014.02" not in await log_indices(es, settings)
    for job_id in job_ids:
        assert await job_keys(redis, tenant.space_id, job_id) == {}


async def test_a_background_pass_removes_in_bounded_batches_and_the_next_pass_follows_at_once(
    turn_free: None,
    client: Client,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    created = await client.post(f"/api/v1/spaces/{tenant.space_id}/jobs", json=[{"name": "bulk"}] * 120, headers=admin)
    job_ids = [job["id"] for job in await body(created, 201)]
    for at in range(0, len(job_ids), 30):
        await asyncio.gather(*(call(client, admin, job_id, "kill") for job_id in job_ids[at : at + 30]))
    long_ago = now_ms() - 60 * DAY_MS
    for job_id in job_ids:
        await backdate(redis, tenant.space_id, job_id, created_ms=long_ago, finished_ms=long_ago)
    service = retention(redis, es, settings, Metrics(), job_days=RETENTION_DAYS)

    first = await service.run_pass(limits=Limits(jobs_per_space=50))
    assert (first.jobs[tenant.space_id].removed, first.complete) == (50, False)
    assert len(await listed(client, admin, tenant)) == 70
    # The background's step: passes one after the other while a limit left work (the default limit: 2000).
    last = await service.run_when_due(asyncio.Event())
    assert last is not None and last.complete
    assert await listed(client, admin, tenant) == set()


async def test_one_instance_at_a_time_takes_the_turn_of_a_pass(
    turn_free: None, redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    services = [retention(redis, es, settings, Metrics(), job_days=RETENTION_DAYS) for _ in range(2)]
    stopping = asyncio.Event()
    first = await asyncio.gather(*(service.run_when_due(stopping) for service in services))
    assert sorted(report is None for report in first) == [False, True]
    # The turn lasts until the next pass is due: nobody runs one before then.
    assert await asyncio.gather(*(service.run_when_due(stopping) for service in services)) == [None, None]
    assert 0 < await redis.pttl(TURN) <= 600_000


async def test_the_background_loop_removes_what_is_past_retention(
    turn_free: None, make_client: AppFactory, tenant: Tenant, admin: dict[str, str], redis: Redis
) -> None:
    client = await make_client()
    job_id = await finished_job(client, admin, tenant)
    long_ago = now_ms() - 60 * DAY_MS
    await backdate(redis, tenant.space_id, job_id, created_ms=long_ago, finished_ms=long_ago)

    background = await make_client(background_tasks=True, job_retention_days=RETENTION_DAYS)
    await eventually(answers_404(client, f"/api/v1/jobs/{job_id}", admin), "the job to be removed")
    exposition = await (await background.get("/metrics")).text()
    counted = [line for line in exposition.splitlines() if line.startswith("joblens_retention_jobs_removed_total ")]
    assert len(counted) == 1 and float(counted[0].split()[1]) >= 1  # the database may hold other tests' old jobs
    assert await job_keys(redis, tenant.space_id, job_id) == {}


async def test_joblens_retention_shows_with_dry_run_and_removes_without(
    client: Client, tenant: Tenant, admin: dict[str, str], redis: Redis, es: AsyncElasticsearch, settings: Settings
) -> None:
    old = await old_month_job(client, redis, tenant, admin, "2013-03-03", "2013-03-04")
    index = f"{settings.index_prefix}-2013.03"
    env = {
        "JOBLENS_REDIS_URL": settings.redis_url,
        "JOBLENS_ELASTICSEARCH_URL": ",".join(settings.elasticsearch_urls),
        "JOBLENS_INDEX_PREFIX": settings.index_prefix,
        "JOBLENS_JOB_RETENTION_DAYS": str(RETENTION_DAYS),
        "JOBLENS_LOG_RETENTION_DAYS": str(RETENTION_DAYS),
    }
    ours = {"space": tenant.space_id, "jobs": 1, "kept": {}}

    dry = await run_joblens("retention", "--dry-run", env=env)
    assert dry.code == 0, dry.stderr
    lines = [orjson.loads(line) for line in dry.stdout.splitlines()]
    assert ours in lines
    assert {"index": index, "action": "would remove", "reason": None} in lines
    assert lines[-1] == {"dryRun": True, "jobs": lines[-1]["jobs"], "indices": 1, "complete": True}
    assert await job_keys(redis, tenant.space_id, old) != {}
    assert index in await log_indices(es, settings)

    real = await run_joblens("retention", env=env)
    assert real.code == 0, real.stderr
    lines = [orjson.loads(line) for line in real.stdout.splitlines()]
    assert ours in lines
    assert {"index": index, "action": "removed", "reason": None} in lines
    assert lines[-1]["dryRun"] is False
    assert await job_keys(redis, tenant.space_id, old) == {}
    assert index not in await log_indices(es, settings)

    off = await run_joblens(
        "retention", env={**env, "JOBLENS_JOB_RETENTION_DAYS": "0", "JOBLENS_LOG_RETENTION_DAYS": ""}
    )
    assert (off.code, off.stdout) == (2, "")
    assert "retention is off" in off.stderr
