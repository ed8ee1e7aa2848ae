"""Callbacks: POSTed when a job ends, retried with backoff, recorded as events, sent once across instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import AppFactory, Tenant, body, create_job
from tests.lifecycle_helpers import FAST_LOOP, events_of, has_status, last_event_is, post, wait_for


@dataclass
class Receiver:
    """A callback endpoint on loopback: answers with the given statuses in turn (then 200), each after
    ``delay_s``; ``/moved`` redirects to it."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    delay_s: float = 0.0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        await asyncio.sleep(self.delay_s)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/hook")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    app = web.Application()
    app.router.add_post("/hook", endpoint.handle)
    app.router.add_route("*", "/moved", endpoint.moved)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    endpoint.url = str(server.make_url("/hook"))
    yield endpoint
    await server.close()


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
    await wait_for(last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
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
    await wait_for(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
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
    await wait_for(last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
    assert [payload["status"] for _, payload in receiver.received] == ["dead", "dead", "dead"]
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_sent", {"attempts": 3})


async def test_callbacks_queued_while_no_instance_runs_are_sent_after_a_restart(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    quiet = await make_client()  # no background loop: like a service that stopped right after the kill
    job = await create_job(quiet, tenant, admin, callbackUrl=receiver.url)
    await post(quiet, admin, f"/api/v1/jobs/{job['id']}/kill")
    await asyncio.sleep(0.3)
    assert receiver.received == []
    restarted = await make_client(**FAST_LOOP)
    await wait_for(last_event_is(restarted, admin, job["id"], "callback_sent"), "the callback after restart")
    assert len(receiver.received) == 1


async def test_a_redirect_is_not_followed_and_does_not_count_as_delivered(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    client = await make_client(**FAST_LOOP, callback_max_attempts=2)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url.replace("/hook", "/moved"))
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill")
    await wait_for(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert receiver.received == []
    assert (await events_of(client, admin, job["id"]))[-1] == ("callback_failed", {"attempts": 2, "error": "HTTP 302"})


async def test_a_receiver_slower_than_the_timeout_counts_as_a_failed_attempt(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.delay_s = 1.0
    client = await make_client(**FAST_LOOP, callback_timeout_s=0.2, callback_max_attempts=2)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill")
    await wait_for(last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert len(receiver.received) == 2
    assert (await events_of(client, admin, job["id"]))[-1] == (
        "callback_failed",
        {"attempts": 2, "error": "timed out"},
    )


async def test_slow_callback_receivers_do_not_hold_up_deadlines(
    make_client: AppFactory, make_tenant: Any, admin: dict[str, str], tenant: Tenant, receiver: Receiver
) -> None:
    """Callbacks hanging for seconds in one space; a delivery timeout in another space is still on time."""
    receiver.delay_s = 5.0
    client = await make_client(**FAST_LOOP, callback_timeout_s=5.0)
    for _ in range(4):
        hanging = await create_job(client, tenant, admin, callbackUrl=receiver.url)
        await post(client, admin, f"/api/v1/jobs/{hanging['id']}/kill")
    await wait_for(lambda: _received(receiver, 4), "the four callbacks to be under way")
    other: Tenant = await make_tenant()
    worker = await other.key("jobs:create", "jobs:read", "jobs:worker")
    job = await create_job(client, other, worker, timeoutSeconds=1)
    await post(client, worker, f"/api/v1/jobs/{job['id']}/claim")
    started = asyncio.get_running_loop().time()
    await wait_for(has_status(client, worker, job["id"], "pending"), "the delivery timeout", timeout_s=4)
    assert asyncio.get_running_loop().time() - started < 2.5


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def test_two_instances_send_each_callback_once(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    instances = [await make_client(**FAST_LOOP), await make_client(**FAST_LOOP)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(
        await instances[0].post(url, json=[{"name": "hooked", "callbackUrl": receiver.url}] * 20, headers=admin), 201
    )
    for number, job in enumerate(created):
        await post(instances[number % 2], admin, f"/api/v1/jobs/{job['id']}/kill")
    for job in created:
        await wait_for(last_event_is(instances[0], admin, job["id"], "callback_sent"), "every callback")
    await asyncio.sleep(0.3)  # both loops tick a few more times
    assert sorted(payload["jobId"] for _, payload in receiver.received) == sorted(job["id"] for job in created)
    for job in created:
        assert [kind for kind, _ in await events_of(instances[0], admin, job["id"])] == [
            "created",
            "killed",
            "callback_sent",
        ]
