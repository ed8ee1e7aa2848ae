"""The client's retries against a real joblens: 429 after its Retry-After, 503 while a store is down, and a log
append whose first attempt is still running when the client gives up on it — retried with the same
Idempotency-Key, it is stored once."""

from __future__ import annotations

import asyncio
import time

import pytest

from devstack.ports import free_port
from devstack.proxy import RecordingProxy
from joblens_client import AsyncJoblens, Backoff, RateLimited, Unavailable, Unreachable
from service.settings import Settings
from tests.client_helpers import base_url, key_of
from tests.helpers import AppFactory, Tenant
from tests.servers import held_requests

QUICK = Backoff(base_s=0.1, cap_s=0.5)


async def test_429_is_retried_no_sooner_than_retry_after(make_client: AppFactory, tenant: Tenant) -> None:
    server = await make_client(rate_limit_per_s=3)
    api_key = key_of(await tenant.key("jobs:read"))
    async with AsyncJoblens(base_url(server), api_key, retries=0) as impatient:
        with pytest.raises(RateLimited) as limited:
            for _ in range(20):
                await impatient.list_jobs()
    assert limited.value.status == 429 and limited.value.retry_after_s is not None
    assert limited.value.retry_after_s >= 1 and "rate limit" in limited.value.message.lower()

    async with AsyncJoblens(base_url(server), api_key, retries=6, backoff=QUICK) as patient:
        started = time.monotonic()
        answers = await asyncio.gather(*(patient.list_jobs() for _ in range(8)))
    assert answers == [[]] * 8  # every call got through, some after waiting as told
    assert time.monotonic() - started >= 1.0


async def test_503_is_retried_until_the_store_is_back(
    make_client: AppFactory, settings: Settings, admin: dict[str, str]
) -> None:
    proxy = RecordingProxy(settings.elasticsearch_urls[0])
    await proxy.start()
    try:
        server = await make_client(elasticsearch_urls=(proxy.url,))
        url = base_url(server)
        async with (
            AsyncJoblens(url, key_of(admin), retries=0) as impatient,
            AsyncJoblens(url, key_of(admin), retries=10, backoff=QUICK) as patient,
        ):
            job = await patient.create_job("outage")
            await patient.append_logs(job.id, [{"message": "before the outage"}])
            await proxy.stop()  # Elasticsearch is unreachable for the service: reads answer 503
            with pytest.raises(Unavailable) as down:
                await impatient.read_logs(job.id)
            assert down.value.status == 503 and "Elasticsearch" in down.value.message
            reading = asyncio.create_task(patient.read_logs(job.id, after=0))
            await asyncio.sleep(1.0)  # the outage lasts a second; the patient client keeps retrying meanwhile
            assert not reading.done()
            await proxy.start()
            page = await asyncio.wait_for(reading, 30)
            assert [line.message for line in page.lines] == ["before the outage"]
    finally:
        await proxy.stop()


async def test_an_append_retried_while_its_first_attempt_runs_is_stored_once(
    make_client: AppFactory, settings: Settings, admin: dict[str, str]
) -> None:
    async with held_requests(settings.elasticsearch_urls[0], "/_bulk") as proxy:
        server = await make_client(elasticsearch_urls=(proxy.url,))
        # each attempt gives up after 0.5 s: the first one is still running at the server when the client retries
        async with AsyncJoblens(base_url(server), key_of(admin), timeout_s=0.5, retries=30, backoff=QUICK) as jl:
            job = await jl.create_job("held")
            appending = asyncio.create_task(jl.append_logs(job.id, [{"message": f"held {n}"} for n in range(5)]))
            await asyncio.wait_for(proxy.held.wait(), 10)
            await asyncio.sleep(1.5)  # a few attempts time out; their retries find the key in use (409) and wait
            assert not appending.done()
            proxy.release.set()
            answer = await asyncio.wait_for(appending, 30)
            stored = [line async for line in jl.lines(job.id)]
    assert [line.message for line in stored] == [f"held {n}" for n in range(5)]
    assert (answer.accepted, answer.first_seq, answer.last_seq) == (5, stored[0].seq, stored[-1].seq)


async def test_nothing_listening_is_unreachable_after_the_retries(admin: dict[str, str]) -> None:
    async with AsyncJoblens(f"http://127.0.0.1:{free_port()}", key_of(admin), retries=2, backoff=QUICK) as jl:
        started = time.monotonic()
        with pytest.raises(Unreachable, match="cannot reach joblens"):
            await jl.create_job("nowhere")
    assert time.monotonic() - started >= 0.1  # it did wait before each retry
