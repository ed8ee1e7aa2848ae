"""Schedules and timeouts, enforced by the background loop of every instance, each deadline once."""

from __future__ import annotations

import asyncio
import time

import pytest
from dirty_equals import IsFloat
from redis.asyncio import Redis

from service.domain.clock import now_ms
from service.stores.keyspace import SpaceKeys
from tests.helpers import AppFactory, Tenant, body, create_job, eventually
from tests.lifecycle_helpers import FAST_LOOP, events_of, get_job, has_status, post, status_of


async def test_scheduled_job_becomes_pending_at_its_time(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(**FAST_LOOP)
    at = time.time() + 0.6
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    job = await create_job(client, tenant, admin, scheduledFor=when)
    assert job["status"] == "scheduled"
    poll_url = f"/api/v1/spaces/{tenant.space_id}/jobs/poll"
    assert (await post(client, admin, poll_url))["jobs"] == []
    await eventually(has_status(client, admin, job["id"], "pending"), "the scheduled job to become pending")
    assert time.time() >= at - 0.01
    claimed = await post(client, admin, poll_url)
    assert [j["id"] for j in claimed["jobs"]] == [job["id"]]


async def test_unacked_delivery_returns_to_pending(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, timeoutSeconds=1)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await eventually(has_status(client, admin, job["id"], "pending"), "the unacked job to return to pending")
    assert await events_of(client, admin, job["id"]) == [
        ("created", None),
        ("delivered", {"attempt": 0}),
        ("timeout", {"reason": "not acknowledged within timeoutSeconds", "attempt": 0}),
    ]


async def test_execution_timeouts_retry_then_make_the_job_dead(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, timeoutSeconds=1, maxRetries=1)
    for _ in range(2):
        await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
        await post(client, admin, f"/api/v1/jobs/{job['id']}/ack")
        await eventually(has_status(client, admin, job["id"], "pending", "dead"), "the running job to time out")
    final = await get_job(client, admin, job["id"])
    assert (final["status"], final["attemptNumber"]) == ("dead", 1)
    assert [(e["type"], e["data"]) for e in final["events"]][3:] == [
        ("timeout", {"reason": "no progress, checkpoint or keepalive within timeoutSeconds", "attempt": 0}),
        ("retried", {"error": "timeout", "attempt": 1}),
        ("delivered", {"attempt": 1}),
        ("started", {"attempt": 1}),
        ("timeout", {"reason": "no progress, checkpoint or keepalive within timeoutSeconds", "attempt": 1}),
        ("dead", {"error": "timeout", "attempt": 1}),
    ]


@pytest.mark.parametrize("action", ["keepalive", "progress", "checkpoint"])
async def test_keepalive_progress_and_checkpoint_keep_a_running_job_alive(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], redis: Redis, action: str
) -> None:
    quiet = await make_client()  # no background loop: nothing times the job out while its deadline is looked at
    job = await create_job(quiet, tenant, admin, timeoutSeconds=1)
    await post(quiet, admin, f"/api/v1/jobs/{job['id']}/claim")
    await post(quiet, admin, f"/api/v1/jobs/{job['id']}/ack")
    deadlines = SpaceKeys(tenant.space_id).deadlines
    payload = {"keepalive": None, "progress": {"percent": 1, "message": "m"}, "checkpoint": {"at": 1}}[action]
    deadline = await redis.zscore(deadlines, job["id"])
    for _ in range(3):
        sent_ms = now_ms()
        await post(quiet, admin, f"/api/v1/jobs/{job['id']}/{action}", payload)
        moved = await redis.zscore(deadlines, job["id"])
        # a whole timeoutSeconds from the action on, whenever it came
        assert moved == IsFloat(ge=max(deadline or 0, sent_ms + 1000), le=now_ms() + 1000)
        deadline = moved
    assert await status_of(quiet, admin, job["id"]) == "running"
    looping = await make_client(**FAST_LOOP)
    await eventually(has_status(looping, admin, job["id"], "pending"), "the job to time out once it goes quiet")


async def test_two_instances_handle_each_deadline_once(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], redis: Redis
) -> None:
    """Thirty delivery timeouts, thirty execution timeouts and thirty schedules coming due, with two loops
    racing for each: every one is handled exactly once (one event each)."""
    instances = [await make_client(**FAST_LOOP), await make_client(**FAST_LOOP)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    soon = time.time() + 1.0
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon)) + f".{int(soon * 1000) % 1000:03d}Z"
    unacked = await body(
        await instances[0].post(url, json=[{"name": "unacked", "timeoutSeconds": 1}] * 30, headers=admin), 201
    )
    running = await body(
        await instances[0].post(url, json=[{"name": "running", "timeoutSeconds": 1}] * 30, headers=admin), 201
    )
    scheduled = await body(
        await instances[0].post(url, json=[{"name": "later", "scheduledFor": when}] * 30, headers=admin), 201
    )
    for name, acked in (("unacked", False), ("running", True)):
        answer = await post(instances[1], admin, f"{url}/poll", {"count": 30, "name": name})
        assert len(answer["jobs"]) == 30
        for job in answer["jobs"] if acked else ():
            await post(instances[1], admin, f"/api/v1/jobs/{job['id']}/ack")
    expected = {
        **{job["id"]: ("pending", ["created", "delivered", "timeout"]) for job in unacked},
        **{job["id"]: ("pending", ["created", "delivered", "started", "timeout", "retried"]) for job in running},
        **{job["id"]: ("pending", ["created", "scheduled"]) for job in scheduled},
    }

    async def all_pending() -> bool:
        statuses = await asyncio.gather(*(status_of(instances[0], admin, job_id) for job_id in expected))
        return set(statuses) == {"pending"}

    await eventually(all_pending, "every deadline and schedule to come due")
    for instance in instances:
        await instance.close()  # lets a sweep under way finish: nothing more can be handled
    keys = SpaceKeys(tenant.space_id)
    assert [await redis.zcard(zset) for zset in (keys.deadlines, keys.scheduled)] == [0, 0]  # nothing left to handle
    reader = await make_client()  # an instance with nothing cached
    seen = {}
    for job_id in expected:
        job = await get_job(reader, admin, job_id)
        seen[job_id] = (job["status"], [event["type"] for event in job["events"]])
    assert seen == expected
