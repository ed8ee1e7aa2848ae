"""Background duties run by every instance: schedules, deadlines, callback deliveries, the log janitor and
retention.

Instances coordinate only through Redis (atomic scripts that re-check what is due), so running several of
them never handles a deadline or sends a callback twice. Retention also takes turns (see `services.retention`),
so that one instance at a time looks through the spaces for what is past retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import orjson

from service.domain.clock import iso_from_ms, new_id, now_ms
from service.domain.jobs import Job, event_record
from service.services.lifecycle import LifecycleService
from service.services.logs import LogService
from service.services.retention import CHECK_EVERY_S, RetentionService
from service.settings import Settings
from service.stores.redis_callbacks import CallbackStore, Delivery

log = logging.getLogger(__name__)
# Deliveries run beside the sweep, never inside it: a slow receiver must not hold up deadlines anywhere.
MAX_DELIVERIES_IN_FLIGHT = 64
SPACES_PER_TICK = 500
# A hint is lost only when an instance dies between a change and its hint: a full pass over every space, now
# and then, bounds how late that change's deadline can be handled.
FULL_PASS_EVERY_S = 60.0


class BackgroundWorker:
    def __init__(
        self,
        lifecycle: LifecycleService,
        callbacks: CallbackStore,
        logs: LogService,
        settings: Settings,
        retention: RetentionService | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._callbacks = callbacks
        self._logs = logs
        self._settings = settings
        self._retention = retention  # None: retention is off
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping`` is set; a failing tick (say, Redis restarting) is logged and retried. Beside
        the ticks, the safety net passes over every space now and then. A stop event rather than cancellation:
        client libraries may turn a cancellation into an error."""
        timeout = aiohttp.ClientTimeout(total=self._settings.callback_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            safety_net = asyncio.create_task(self._safety_net(http, stopping), name="joblens-safety-net")
            # Retention in a task of its own too: deleting an index or reading a month's jobs takes its time.
            retention = asyncio.create_task(self._retention_turns(stopping), name="joblens-retention")
            try:
                while not stopping.is_set():
                    try:
                        await self.tick(http, stopping)
                    except Exception as exc:
                        log.warning("background tick failed: %s", exc)
                    await _pause(stopping, self._settings.timeout_loop_interval_s)
            finally:
                # The safety net first (it may still start deliveries), then every delivery: each is bounded by
                # callback_timeout_s, and none starts once stopping is set.
                await asyncio.gather(safety_net, retention, return_exceptions=True)
                while self._deliveries:
                    await asyncio.gather(*self._deliveries, return_exceptions=True)

    async def tick(self, http: aiohttp.ClientSession, stopping: asyncio.Event) -> None:
        """Sweep the spaces hinted as due and start their callbacks."""
        for space_id in await self._lifecycle.spaces_to_sweep(SPACES_PER_TICK, everything=False):
            await self._visit(http, space_id, stopping)

    async def _safety_net(self, http: aiohttp.ClientSession, stopping: asyncio.Event) -> None:
        """Every FULL_PASS_EVERY_S, visit every space — what a lost hint left, and the log janitor — in a task of
        its own: a pass over many spaces (or a slow Elasticsearch) must not hold up the hinted sweeps."""
        while not stopping.is_set():
            try:
                for space_id in await self._lifecycle.spaces_to_sweep(0, everything=True):
                    if stopping.is_set():
                        return
                    await self._visit(http, space_id, stopping)
                    try:
                        await self._logs.clean_up_abandoned(space_id, stopping)
                    except Exception as exc:  # Elasticsearch away: the ranges stay excluded; cleaned next pass
                        log.warning("log clean-up of space %s failed: %s", space_id, exc)
            except Exception as exc:
                log.warning("background pass over every space failed: %s", exc)
            await _pause(stopping, FULL_PASS_EVERY_S)

    async def _retention_turns(self, stopping: asyncio.Event) -> None:
        """Every CHECK_EVERY_S, run a retention pass if it is this instance's turn (a pass stops between batches
        once ``stopping`` is set)."""
        if self._retention is None:
            return
        while not stopping.is_set():
            try:
                report = await self._retention.run_when_due(stopping)
                if report is not None and (report.jobs_removed or report.indices_removed):
                    log.info(
                        "retention removed %d job(s) and %d log index(es)", report.jobs_removed, report.indices_removed
                    )
            except Exception as exc:  # a store away: the next turn tries again
                log.warning("retention pass failed: %s", exc)
            await _pause(stopping, CHECK_EVERY_S)

    async def _visit(self, http: aiohttp.ClientSession, space_id: str, stopping: asyncio.Event) -> None:
        """Promote, time out and call back what is due in one space. One space failing (say, a job hash gone
        astray) is logged and does not keep the others from their turn."""
        try:
            await self._lifecycle.sweep(space_id)
            if not stopping.is_set():  # a delivery started now could be cut short by the shutdown
                await self.start_callbacks(http, space_id)
            await self._lifecycle.rehint(space_id)
        except Exception as exc:
            log.warning("background sweep of space %s failed: %s", space_id, exc)

    async def start_callbacks(self, http: aiohttp.ClientSession, space_id: str) -> None:
        """Take the space's due deliveries (as many as there is room for) and send them in the background."""
        room = MAX_DELIVERIES_IN_FLIGHT - len(self._deliveries)
        if room <= 0:
            return  # the due ones wait for the next tick; nothing is taken that cannot be sent now
        now = now_ms()
        lease_end = now + int((self._settings.callback_timeout_s + 5) * 1000)
        for job_id in await self._callbacks.due(space_id, now, room):
            if len(self._deliveries) >= MAX_DELIVERIES_IN_FLIGHT:  # the other loop may have filled the room
                return
            delivery = await self._callbacks.take(space_id, job_id, now, lease_end)
            if delivery is not None:
                task = asyncio.create_task(self._deliver(http, space_id, delivery), name=f"callback {job_id}")
                self._deliveries.add(task)
                task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # settling failed (Redis away): the lease runs out and the delivery is attempted again
            log.warning("callback delivery %s could not be recorded: %s", task.get_name(), task.exception())

    async def _deliver(self, http: aiohttp.ClientSession, space_id: str, delivery: Delivery) -> None:
        job = delivery.job
        error = await post_callback(http, job)
        attempts = delivery.attempt
        if error is None:
            event = _event(job, "callback_sent", {"attempts": attempts})
            await self._callbacks.settle(space_id, job.id, None, event)
        elif attempts >= self._settings.callback_max_attempts:
            log.warning("callback for job %s failed for good after %d attempts: %s", job.id, attempts, error)
            event = _event(job, "callback_failed", {"attempts": attempts, "error": error})
            await self._callbacks.settle(space_id, job.id, None, event)
        else:
            backoff_ms = int(self._settings.callback_backoff_s * 1000 * 2 ** (attempts - 1))
            next_attempt = now_ms() + backoff_ms
            await self._callbacks.settle(space_id, job.id, next_attempt, None)
            await self._lifecycle.hint(space_id, next_attempt)  # the sweep hinted the lease's end, which is later


def callback_body(job: Job) -> dict[str, Any]:
    """What a callbackUrl receives when its job ends (the contract's callback payload)."""
    return {
        "jobId": job.id,
        "spaceId": job.space_id,
        "name": job.name,
        "status": job.status,
        "attemptNumber": job.attempt_number,
        "result": orjson.Fragment(job.result_json) if job.result_json else None,
        "timestamp": iso_from_ms(job.ended_ms),
    }


async def post_callback(http: aiohttp.ClientSession, job: Job) -> str | None:
    """POST the documented body with the job's headers; None when delivered (HTTP 200), else why not."""
    assert job.callback_url is not None  # only jobs with a callbackUrl are ever queued for delivery
    headers = dict(orjson.loads(job.callback_headers_json)) if job.callback_headers_json else {}
    headers["Content-Type"] = "application/json"
    try:
        # Redirects are not followed: only a 200 from the callbackUrl itself counts as delivered.
        async with http.post(
            job.callback_url, data=orjson.dumps(callback_body(job)), headers=headers, allow_redirects=False
        ) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except TimeoutError:
        return "timed out"
    except aiohttp.ClientError as exc:
        return f"request failed: {type(exc).__name__}"
    except Exception as exc:  # e.g. a host name IDNA cannot encode: a failed attempt like any other
        # the type only: a message could quote the URL, whose query may hold a secret
        log.warning("callback for job %s could not be sent: %s", job.id, type(exc).__name__)
        return f"request failed: {type(exc).__name__}"


def _event(job: Job, kind: str, data: dict[str, Any]) -> bytes:
    return event_record(new_id(), job.id, job.space_id, kind, data, now_ms())


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
