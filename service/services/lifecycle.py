"""Worker calls that move a job through its life, and the sweep that enforces schedules and deadlines."""

from __future__ import annotations

from typing import Any

from service.domain.clock import now_ms
from service.domain.jobs import HELD_STATUSES, TERMINAL_STATUSES
from service.domain.worker_bodies import PollRequest
from service.stores.redis_transitions import (
    ACK,
    CHECKPOINT,
    CLAIM,
    COMPLETE,
    EVENT,
    FAIL,
    KEEPALIVE,
    KILL,
    PROMOTE,
    TIMEOUT,
    Operation,
    Transition,
    TransitionStore,
)

# A poll reads a few more candidates than it wants, so that jobs concurrent pollers took are made up for in the
# same step; when even those are gone, it looks again (a bounded number of times: each look finds fresh jobs).
POLL_SPARE_CANDIDATES = 16
POLL_ROUNDS = 8
SWEEP_BATCH = 200
JobView = dict[str, Any]


class LifecycleService:
    """The worker calls: each moves one job (the rules of which call needs which state are the store's
    `Operation` table) and answers the job as it is afterwards, or raises `WrongState` (409) / `JobNotFound`."""

    def __init__(self, store: TransitionStore) -> None:
        self._store = store

    async def claim(self, space_id: str, job_id: str) -> JobView:
        return await self._transition(CLAIM, space_id, job_id)

    async def ack(self, space_id: str, job_id: str) -> JobView:
        return await self._transition(ACK, space_id, job_id)

    async def keepalive(self, space_id: str, job_id: str) -> JobView:
        return await self._transition(KEEPALIVE, space_id, job_id)

    async def checkpoint(self, space_id: str, job_id: str, data_json: bytes) -> JobView:
        return await self._transition(CHECKPOINT, space_id, job_id, data_json)

    async def event(self, space_id: str, job_id: str, kind: str, data_json: bytes) -> JobView:
        return await self._transition(EVENT, space_id, job_id, kind, data_json)

    async def complete(self, space_id: str, job_id: str, result_json: bytes) -> JobView:
        return await self._transition(COMPLETE, space_id, job_id, result_json)

    async def fail(self, space_id: str, job_id: str, error_json: bytes) -> JobView:
        return await self._transition(FAIL, space_id, job_id, error_json)

    async def kill(self, space_id: str, job_id: str, reason: str | None) -> JobView:
        return await self._transition(KILL, space_id, job_id, reason)

    async def _transition(self, operation: Operation, space_id: str, job_id: str, *values: Any) -> JobView:
        name = await self._store.job_name(space_id, job_id)
        result = await self._store.run(operation, space_id, job_id, name, *values)
        if result.outcome == "wrong":
            raise operation.wrong_state(result.job.status)
        await self._hint(space_id, [result])
        return result.job.view()

    async def _hint(self, space_id: str, results: list[Transition]) -> None:
        """Tell the sweep when something of these jobs falls due: a deadline, or a callback to send now."""
        due: list[int] = []
        for result in results:
            job = result.job
            if job.status in HELD_STATUSES:
                due.append(job.updated_ms + job.timeout_s * 1000)
            elif job.status in TERMINAL_STATUSES and job.callback_url:
                due.append(job.updated_ms)
        if due:
            await self._store.hint_due(space_id, min(due))

    async def poll(self, space_id: str, request: PollRequest) -> list[JobView]:
        """Claim up to ``count`` of the oldest pending jobs; concurrent pollers never get the same job."""
        claimed: list[JobView] = []
        for _ in range(POLL_ROUNDS):
            wanted = request.count - len(claimed)
            candidates = await self._store.pending_candidates(space_id, request.names, wanted + POLL_SPARE_CANDIDATES)
            taken = await self._store.claim_oldest(space_id, candidates, wanted)
            await self._hint(space_id, taken)
            claimed.extend(t.job.view() for t in taken)
            if len(claimed) >= request.count or len(candidates) < wanted + POLL_SPARE_CANDIDATES:
                break  # enough, or the queue held no more than what was just looked at
        return claimed

    async def sweep(self, space_id: str) -> int:
        """Promote due scheduled jobs and handle due deadlines; returns how many jobs this call moved.
        Each script re-checks that its job is due, so concurrent sweeps handle every deadline once."""
        deadlines, scheduled = await self._store.due(space_id, now_ms(), SWEEP_BATCH)
        moved: list[Transition | None] = []
        if scheduled:
            moved += await self._store.run_many(PROMOTE, space_id, await self._store.names_of(space_id, scheduled))
        if deadlines:
            moved += await self._store.run_many(TIMEOUT, space_id, await self._store.names_of(space_id, deadlines))
        return sum(1 for result in moved if result is not None and result.outcome == "ok")

    async def spaces_to_sweep(self, limit: int, everything: bool) -> list[str]:
        return await self._store.spaces_to_sweep(now_ms(), limit, everything)

    async def hint(self, space_id: str, due_ms: int) -> None:
        """Something of this space falls due at ``due_ms`` (an earlier hint is kept)."""
        await self._store.hint_due(space_id, due_ms)

    async def rehint(self, space_id: str) -> None:
        await self._store.rehint(space_id)
