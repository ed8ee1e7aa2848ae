"""Callbacks: POSTed when a job ends, retried with backoff, recorded as events, sent once across instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from dirty_equals import IsFloat
from redis.asyncio import Redis

from service.domain.clock import now_ms
from service.stores.keyspace import SpaceKeys
from tests.helpers import AppFactory, Tenant, body, create_job, eventually
from tests.lifecycle_helpers import FAST_LOOP, events_of, has_status, last_event_is, post


@dataclass
class Receiver:
    """A callback endpoint on loopback: answers with the given statuses in turn (then 200); while held it takes
    requests but answers none of them until released. ``/moved`` redirects to it."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    answered: int = 0
    url: str = ""
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        await self._open.wait()
        self.answered += 1
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/hook")


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    servers: list[tuple[Receiver, TestServer]] = []

    async def start() -> Receiver:
        endpoint = Receiver()
        app = web.Application()
        app.router.add_post("/hook", endpoint.handle)
        app.router.add_route("*", "/moved", endpoint.moved)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        endpoint.url = str(server.make_url("/hook"))
        servers.append((endpoint, server))
        return endpoint

    yield start
    for endpoint, server in servers:
        endpoint.release()  # a request still held would hold up the server's close
        await server.close()


@pytest.fixture
async def receiver(make_receiver: Callable[[], Awaitable[Receiver]]) -> Receiver:
    return await make_receiver()


async def test_callback_is_sent_with_headers_on_completion(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    client = await make_client(**FAST_LOOP)
    job = await create_job(
        client, tenant, admin, callbackUrl=receiver.url, callbackHeaders={"Authorization": "Bearer hook-secret"}
    )
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await post(client, admin, f"/api/v1/jobs/{job['id']}/ack")
    done = await post(client, admin, f"/api/v1/jobs/{job['id']}/complete", {"result": {"ok": True}})
    await eventually(last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
    assert len(receiver.received) == 1
    headers, payload = receiver.received[0]
    assert headers["Authorization"] == "Bearer hook-secret"
    assert payload == {
        "jobId": job["id"],
        "spaceId": tenant.space_id,
        "name": "test-job",
        "status": "completed",
        "attemptNumber": 0,
        "result": {"ok": True},
        "timestamp": done["completedAt"],
    }
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_sent", {"attempts": 1})


async def test_failing_callback_is_retried_with_backoff_then_recorded_as_failed(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 500, 500, 500, 500]
    client = await make_client(**FAST_LOOP, callback_max_attempts=3)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill", {"reason": "stop"})
    await eventually(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert len(receiver.received) == 3
    assert {payload["status"] for _, payload in receiver.received} == {"killed"}
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_failed", {"attempts": 3, "error": "HTTP 500"})


async def test_callback_retry_succeeds_after_transient_failures(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.statuses = [502, 204]  # 204 is not 200: only 200 counts as delivered
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url, maxRetries=0)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await post(client, admin, f"/api/v1/jobs/{job['id']}/fail", {"error": "boom"})
    await eventually(last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
    assert [payload["status"] for _, payload in receiver.received] == ["dead", "dead", "dead"]
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_sent", {"attempts": 3})


async def test_callbacks_queued_while_no_instance_runs_are_sent_after_a_restart(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver, redis: Redis
) -> None:
    quiet = await make_client()  # no background loop: like a service that stopped right after the kill
    job = await create_job(quiet, tenant, admin, callbackUrl=receiver.url)
    await post(quiet, admin, f"/api/v1/jobs/{job['id']}/kill")
    keys = SpaceKeys(tenant.space_id)
    # the delivery waits in Redis, due, with no attempt made
    assert await redis.zscore(keys.callbacks, job["id"]) == IsFloat(le=now_ms())
    assert await redis.hgetall(keys.callback(job["id"])) == {}
    assert await events_of(quiet, admin, job["id"]) == [("created", None), ("killed", {"reason": None})]

    restarted = await make_client(**FAST_LOOP)
    await eventually(last_event_is(restarted, admin, job["id"], "callback_sent"), "the callback after restart")
    await restarted.close()  # waits for every delivery in flight: nothing more can arrive
    assert [payload["jobId"] for _, payload in receiver.received] == [job["id"]]
    assert await redis.zscore(keys.callbacks, job["id"]) is None
    assert await events_of(await make_client(), admin, job["id"]) == [  # an instance with nothing cached
        ("created", None),
        ("killed", {"reason": None}),
        ("callback_sent", {"attempts": 1}),
    ]


async def test_a_redirect_is_not_followed_and_does_not_count_as_delivered(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    client = await make_client(**FAST_LOOP, callback_max_attempts=2)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url.replace("/hook", "/moved"))
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill")
    await eventually(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert receiver.received == []
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_failed", {"attempts": 2, "error": "HTTP 302"})


async def test_a_receiver_slower_than_the_timeout_counts_as_a_failed_attempt(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.hold()  # answers nothing until the test ends
    client = await make_client(**FAST_LOOP, callback_timeout_s=0.2, callback_max_attempts=2)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill")
    await eventually(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert receiver.answered == 0
    assert (await events_of(client, admin, job["id"]))[-1] == (
        "callback_failed",
        {"attempts": 2, "error": "timed out"},
    )


async def test_slow_callback_receivers_do_not_hold_up_deadlines(
    make_client: AppFactory,
    make_tenant: Callable[[], Awaitable[Tenant]],
    admin: dict[str, str],
    tenant: Tenant,
    make_receiver: Callable[[], Awaitable[Receiver]],
) -> None:
    """Callbacks hanging in one space; in another space a delivery timeout is handled and a callback delivered
    while every hanging one still waits for its answer."""
    slow, fast = await make_receiver(), await make_receiver()
    slow.hold()
    client = await make_client(**FAST_LOOP, callback_timeout_s=60)
    hanging = [(await create_job(client, tenant, admin, callbackUrl=slow.url))["id"] for _ in range(4)]
    for job_id in hanging:
        await post(client, admin, f"/api/v1/jobs/{job_id}/kill")
    await eventually(lambda: _received(slow, 4), "the four callbacks to be under way")

    other = await make_tenant()
    worker = await other.key("jobs:create", "jobs:read", "jobs:worker", "jobs:kill")
    unacked = await create_job(client, other, worker, timeoutSeconds=1)
    await post(client, worker, f"/api/v1/jobs/{unacked['id']}/claim")
    hooked = await create_job(client, other, worker, callbackUrl=fast.url)
    await post(client, worker, f"/api/v1/jobs/{hooked['id']}/kill")
    await eventually(has_status(client, worker, unacked["id"], "pending"), "the delivery timeout")
    await eventually(last_event_is(client, worker, hooked["id"], "callback_sent"), "the other space's callback")
    assert (len(slow.received), slow.answered) == (4, 0)  # all of it while every slow delivery was still held
    for job_id in hanging:
        assert (await events_of(client, admin, job_id))[-1][0] == "killed"

    slow.release()
    for job_id in hanging:
        await eventually(last_event_is(client, admin, job_id, "callback_sent"), "the released callbacks")


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def test_two_instances_send_each_callback_once(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver, redis: Redis
) -> None:
    instances = [await make_client(**FAST_LOOP), await make_client(**FAST_LOOP)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(
        await instances[0].post(url, json=[{"name": "hooked", "callbackUrl": receiver.url}] * 20, headers=admin), 201
    )
    for number, job in enumerate(created):
        await post(instances[number % 2], admin, f"/api/v1/jobs/{job['id']}/kill")
    for job in created:
        await eventually(last_event_is(instances[0], admin, job["id"], "callback_sent"), "every callback")
    for instance in instances:
        await instance.close()  # waits for every delivery in flight: nothing more can arrive
    assert await redis.zcard(SpaceKeys(tenant.space_id).callbacks) == 0  # and nothing is left to send again
    assert sorted(payload["jobId"] for _, payload in receiver.received) == sorted(job["id"] for job in created)
    reader = await make_client()
    for job in created:
        assert [kind for kind, _ in await events_of(reader, admin, job["id"])] == [
            "created",
            "killed",
            "callback_sent",
        ]
