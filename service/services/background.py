"""Background duties run by every instance: schedules, deadlines and callback deliveries.

Instances coordinate only through Redis (atomic scripts that re-check what is due), so running several of
them never handles a deadline or sends a callback twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
import orjson

from service.domain.clock import iso_from_ms, new_id, now_ms
from service.domain.jobs import event_record
from service.services.lifecycle import LifecycleService
from service.settings import Settings
from service.stores.redis_callbacks import CallbackStore, Delivery

log = logging.getLogger(__name__)
CALLBACK_BATCH = 20
SPACES_PER_TICK = 500
# Hints can be lost in a rare race (see LifecycleStore.rehint): a full pass over every space bounds the delay.
FULL_PASS_EVERY_S = 10.0


class BackgroundWorker:
    def __init__(self, lifecycle: LifecycleService, callbacks: CallbackStore, settings: Settings) -> None:
        self._lifecycle = lifecycle
        self._callbacks = callbacks
        self._settings = settings

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping`` is set; a failing tick (say, Redis restarting) is logged and retried.
        A stop event rather than cancellation: client libraries may turn a cancellation into an error."""
        timeout = aiohttp.ClientTimeout(total=self._settings.callback_timeout_s)
        last_full_pass = 0.0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stopping.is_set():
                full_pass = time.monotonic() - last_full_pass >= FULL_PASS_EVERY_S
                try:
                    await self.tick(http, full_pass)
                    if full_pass:
                        last_full_pass = time.monotonic()
                except Exception as exc:
                    log.warning("background tick failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._settings.timeout_loop_interval_s)

    async def tick(self, http: aiohttp.ClientSession, full_pass: bool = False) -> None:
        """Sweep the spaces hinted as due (every space on a full pass), then send their callbacks."""
        for space_id in await self._lifecycle.spaces_to_sweep(SPACES_PER_TICK, everything=full_pass):
            await self._lifecycle.sweep(space_id)
            await self.send_callbacks(http, space_id)
            await self._lifecycle.rehint(space_id)

    async def send_callbacks(self, http: aiohttp.ClientSession, space_id: str) -> None:
        now = now_ms()
        lease_end = now + int((self._settings.callback_timeout_s + 5) * 1000)
        for job_id in await self._callbacks.due(space_id, now, CALLBACK_BATCH):
            delivery = await self._callbacks.take(space_id, job_id, now, lease_end)
            if delivery is not None:
                await self._deliver(http, space_id, delivery)

    async def _deliver(self, http: aiohttp.ClientSession, space_id: str, delivery: Delivery) -> None:
        job = delivery.job
        error = await post_callback(http, job)
        attempts = delivery.attempt
        if error is None:
            event = _event(job, "callback_sent", {"attempts": attempts})
            await self._callbacks.settle(space_id, delivery.job_id, None, event)
        elif attempts >= self._settings.callback_max_attempts:
            log.warning("callback for job %s failed for good after %d attempts: %s", delivery.job_id, attempts, error)
            event = _event(job, "callback_failed", {"attempts": attempts, "error": error})
            await self._callbacks.settle(space_id, delivery.job_id, None, event)
        else:
            backoff_ms = int(self._settings.callback_backoff_s * 1000 * 2 ** (attempts - 1))
            await self._callbacks.settle(space_id, delivery.job_id, now_ms() + backoff_ms, None)


async def post_callback(http: aiohttp.ClientSession, job: dict[str, str]) -> str | None:
    """POST the documented body with the job's headers; None when delivered (HTTP 200), else why not."""
    payload = {
        "jobId": job["id"],
        "spaceId": job["spaceId"],
        "name": job["name"],
        "status": job["status"],
        "attemptNumber": int(job["attemptNumber"]),
        "result": orjson.Fragment(job["result"]) if job["result"] else None,
        "timestamp": iso_from_ms(int(job["completedAt"] or job["updatedAt"])),
    }
    headers = dict(orjson.loads(job["callbackHeaders"])) if job["callbackHeaders"] else {}
    headers["Content-Type"] = "application/json"
    try:
        async with http.post(job["callbackUrl"], data=orjson.dumps(payload), headers=headers) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except TimeoutError:
        return "timed out"
    except aiohttp.ClientError as exc:
        return f"request failed: {type(exc).__name__}"


def _event(job: dict[str, str], kind: str, data: dict[str, Any]) -> bytes:
    return event_record(new_id(), job["id"], job["spaceId"], kind, data, now_ms())
