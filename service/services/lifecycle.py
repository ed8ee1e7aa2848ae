"""Worker calls that move a job through its life, and the sweep that enforces schedules and deadlines."""

from __future__ import annotations

from typing import Any

from service.domain.clock import now_ms
from service.domain.jobs import TERMINAL_STATUSES, job_view
from service.domain.worker_bodies import PollRequest
from service.stores.redis_transitions import Transition, TransitionStore, wrong_state

# operation → (what the 409 message calls it, the state it requires)
REQUIREMENTS = {
    "claim": ("claim", "pending"),
    "ack": ("ack", "delivered"),
    "keepalive": ("keepalive", "running"),
    "complete": ("complete", "running"),
    "fail": ("fail", "delivered or running"),
    "kill": ("kill", "non-terminal"),
    "checkpoint": ("checkpoint", "non-terminal"),
    "event": ("event", "non-terminal"),
}
# A poll reads a few more candidates than it wants, so that jobs concurrent pollers took are made up for in the
# same step; when even those are gone, it looks again (a bounded number of times: each look finds fresh jobs).
POLL_SPARE_CANDIDATES = 16
POLL_ROUNDS = 8
SWEEP_BATCH = 200


class LifecycleService:
    def __init__(self, store: TransitionStore) -> None:
        self._store = store

    async def transition(self, operation: str, space_id: str, job_id: str, *args: str | bytes) -> dict[str, Any]:
        """Run one transition on one job; `WrongState` (409) names the job's current status."""
        name = await self._store.job_name(space_id, job_id)
        result = await self._store.run(operation, space_id, job_id, name, *args)
        if result.outcome == "wrong":
            raise wrong_state(result, *REQUIREMENTS[operation])
        await self._hint(space_id, [result])
        return job_view(result.job)

    async def _hint(self, space_id: str, results: list[Transition]) -> None:
        """Tell the sweep when something of these jobs falls due: a deadline, or a callback to send now."""
        due: list[int] = []
        for result in results:
            job = result.job
            if result.status in ("delivered", "running"):
                due.append(int(job["updatedAt"]) + int(job["timeoutSeconds"]) * 1000)
            elif result.status in TERMINAL_STATUSES and job["callbackUrl"]:
                due.append(int(job["updatedAt"]))
        if due:
            await self._store.hint_due(space_id, min(due))

    async def poll(self, space_id: str, request: PollRequest) -> list[dict[str, Any]]:
        """Claim up to ``count`` of the oldest pending jobs; concurrent pollers never get the same job."""
        claimed: list[dict[str, Any]] = []
        for _ in range(POLL_ROUNDS):
            wanted = request.count - len(claimed)
            candidates = await self._store.pending_candidates(space_id, request.names, wanted + POLL_SPARE_CANDIDATES)
            taken = await self._store.claim_oldest(space_id, candidates, wanted)
            await self._hint(space_id, taken)
            claimed.extend(job_view(t.job) for t in taken)
            if len(claimed) >= request.count or len(candidates) < wanted + POLL_SPARE_CANDIDATES:
                break  # enough, or the queue held no more than what was just looked at
        return claimed

    async def sweep(self, space_id: str) -> int:
        """Promote due scheduled jobs and handle due deadlines; returns how many jobs this call moved.
        Each script re-checks that its job is due, so concurrent sweeps handle every deadline once."""
        deadlines, scheduled = await self._store.due(space_id, now_ms(), SWEEP_BATCH)
        moved: list[Transition | None] = []
        if scheduled:
            moved += await self._store.run_many("promote", space_id, await self._store.names_of(space_id, scheduled))
        if deadlines:
            moved += await self._store.run_many("timeout", space_id, await self._store.names_of(space_id, deadlines))
        return sum(1 for result in moved if result is not None and result.outcome == "ok")

    async def spaces_to_sweep(self, limit: int, everything: bool) -> list[str]:
        return await self._store.spaces_to_sweep(now_ms(), limit, everything)

    async def hint(self, space_id: str, due_ms: int) -> None:
        """Something of this space falls due at ``due_ms`` (an earlier hint is kept)."""
        await self._store.hint_due(space_id, due_ms)

    async def rehint(self, space_id: str) -> None:
        await self._store.rehint(space_id)
