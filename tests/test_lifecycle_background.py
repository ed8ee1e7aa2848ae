"""Schedules, timeouts and callbacks, handled by the background loop of every instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import AppFactory, Tenant, body, create_job

FAST_LOOP = {"background_tasks": True, "timeout_loop_interval_s": 0.05, "callback_backoff_s": 0.05}


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def get_job(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> Any:
    return await body(await client.get(f"/api/v1/jobs/{job_id}", headers=headers), 200)


async def status_of(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> str:
    return str((await get_job(client, headers, job_id))["status"])


async def post(client: TestClient[Any, Any], headers: dict[str, str], path: str, payload: Any = None) -> Any:
    response = await client.post(path, json=payload, headers=headers)
    return await body(response, 200)


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
    await wait_for(lambda: _is(client, admin, job["id"], "pending"), "the scheduled job to become pending")
    assert time.time() >= at - 0.01
    claimed = await post(client, admin, poll_url)
    assert [j["id"] for j in claimed["jobs"]] == [job["id"]]


async def _is(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, status: str) -> bool:
    return await status_of(client, headers, job_id) == status


async def test_unacked_delivery_returns_to_pending(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, timeoutSeconds=1)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await wait_for(lambda: _is(client, admin, job["id"], "pending"), "the unacked job to return to pending")
    events = [(e["type"], e["data"]) for e in (await get_job(client, admin, job["id"]))["events"]]
    assert events == [
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
        await wait_for(lambda: _is_not(client, admin, job["id"], "running"), "the running job to time out")
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


async def _is_not(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, status: str) -> bool:
    return await status_of(client, headers, job_id) != status


@pytest.mark.parametrize("action", ["keepalive", "progress", "checkpoint"])
async def test_keepalive_progress_and_checkpoint_keep_a_running_job_alive(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], action: str
) -> None:
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, timeoutSeconds=1)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await post(client, admin, f"/api/v1/jobs/{job['id']}/ack")
    payload = {"keepalive": None, "progress": {"percent": 1, "message": "m"}, "checkpoint": {"at": 1}}[action]
    for _ in range(6):  # 2.4 s in all: well past the 1 s timeout
        await asyncio.sleep(0.4)
        await post(client, admin, f"/api/v1/jobs/{job['id']}/{action}", payload)
    assert await status_of(client, admin, job["id"]) == "running"
    await wait_for(lambda: _is(client, admin, job["id"], "pending"), "the job to time out once it goes quiet")


async def test_concurrent_pollers_never_share_a_job_and_lose_none(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    instances = [await make_client(), await make_client()]
    jobs = [{"name": "batch" if i % 2 else "other"} for i in range(120)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(await instances[0].post(url, json=jobs, headers=admin), 201)

    async def poller(number: int) -> list[str]:
        client = instances[number % 2]
        got: list[str] = []
        while True:
            answer = await post(client, admin, f"{url}/poll", {"count": 1 + number % 7})
            if not answer["jobs"]:
                return got
            assert all(job["status"] == "delivered" for job in answer["jobs"])
            got.extend(job["id"] for job in answer["jobs"])

    results = await asyncio.gather(*(poller(n) for n in range(8)))
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)), "a job was delivered twice"
    assert sorted(claimed) == sorted(job["id"] for job in created)


async def test_poll_filters_by_name_aliases_and_takes_the_oldest_first(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    first = await create_job(client, tenant, admin, name="resize")
    await create_job(client, tenant, admin, name="encode")
    third = await create_job(client, tenant, admin, name="resize")
    for alias in ({"name": "resize"}, {"types": ["resize"]}):
        answer = await post(client, admin, f"{url}/poll", {"count": 1, **alias})
        assert [job["id"] for job in answer["jobs"]] == [first["id"] if alias.get("name") else third["id"]]
    answer = await post(client, admin, f"{url}/poll", {"count": 5, "names": ["resize", "encode"]})
    assert [job["name"] for job in answer["jobs"]] == ["encode"]
    bad = await client.post(f"{url}/poll", json={"count": 51}, headers=admin)
    assert await body(bad, 400) == {"error": "count must be an integer between 1 and 50"}


@dataclass
class Receiver:
    """A callback endpoint on loopback that answers with the given statuses in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    app = web.Application()
    app.router.add_post("/hook", endpoint.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    endpoint.url = str(server.make_url("/hook"))
    yield endpoint
    await server.close()


async def _events(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> list[Any]:
    return [(e["type"], e["data"]) for e in (await get_job(client, headers, job_id))["events"]]


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
    await wait_for(lambda: _last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
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
    assert (await _events(client, admin, job["id"]))[-1] == ("callback_sent", {"attempts": 1})


async def _last_event_is(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, kind: str) -> bool:
    last_kind: str = (await _events(client, headers, job_id))[-1][0]
    return last_kind == kind


async def test_failing_callback_is_retried_with_backoff_then_recorded_as_failed(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 500, 500, 500, 500]
    client = await make_client(**FAST_LOOP, callback_max_attempts=3)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/kill", {"reason": "stop"})
    await wait_for(lambda: _last_event_is(client, admin, job["id"], "callback_failed"), "the callback to give up")
    assert len(receiver.received) == 3
    assert {payload["status"] for _, payload in receiver.received} == {"killed"}
    assert (await _events(client, admin, job["id"]))[-1] == ("callback_failed", {"attempts": 3, "error": "HTTP 500"})


async def test_callback_retry_succeeds_after_transient_failures(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    receiver.statuses = [502, 204]  # 204 is not 200: only 200 counts as delivered
    client = await make_client(**FAST_LOOP)
    job = await create_job(client, tenant, admin, callbackUrl=receiver.url, maxRetries=0)
    await post(client, admin, f"/api/v1/jobs/{job['id']}/claim")
    await post(client, admin, f"/api/v1/jobs/{job['id']}/fail", {"error": "boom"})
    await wait_for(lambda: _last_event_is(client, admin, job["id"], "callback_sent"), "the callback")
    assert [payload["status"] for _, payload in receiver.received] == ["dead", "dead", "dead"]
    assert (await _events(client, admin, job["id"]))[-1] == ("callback_sent", {"attempts": 3})


async def test_callbacks_queued_while_no_instance_runs_are_sent_after_a_restart(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str], receiver: Receiver
) -> None:
    quiet = await make_client()  # no background loop: like a service that stopped right after the kill
    job = await create_job(quiet, tenant, admin, callbackUrl=receiver.url)
    await post(quiet, admin, f"/api/v1/jobs/{job['id']}/kill")
    await asyncio.sleep(0.3)
    assert receiver.received == []
    restarted = await make_client(**FAST_LOOP)
    await wait_for(lambda: _last_event_is(restarted, admin, job["id"], "callback_sent"), "the callback after restart")
    assert len(receiver.received) == 1


async def test_two_instances_handle_each_deadline_once(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    instances = [await make_client(**FAST_LOOP), await make_client(**FAST_LOOP)]
    url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(
        await instances[0].post(url, json=[{"name": "t", "timeoutSeconds": 1, "maxRetries": 5}] * 30, headers=admin),
        201,
    )
    answer = await post(instances[1], admin, f"{url}/poll", {"count": 30})
    assert len(answer["jobs"]) == 30
    ids = [job["id"] for job in created]

    async def all_back() -> bool:
        statuses = await asyncio.gather(*(status_of(instances[0], admin, job_id) for job_id in ids))
        return set(statuses) == {"pending"}

    await wait_for(all_back, "every delivery to time out")
    await asyncio.sleep(0.3)  # let both loops run a few more ticks
    for job_id in ids:
        kinds = [kind for kind, _ in await _events(instances[0], admin, job_id)]
        assert kinds == ["created", "delivered", "timeout"]
