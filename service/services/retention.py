"""Retention: finished jobs past ``JOBLENS_JOB_RETENTION_DAYS`` and log indices past ``JOBLENS_LOG_RETENTION_DAYS``.

A job is past retention once it has ended (completed, dead or killed) and its ``completedAt`` — set once, by the
terminal transition, and never changed after — is older than the retention. Not ``createdAt`` (a job that ran for
weeks would go the moment it ended) nor ``updatedAt`` (for an ended job it says the same, but it is the record's
last change, not the end). Such a job goes with every key of its own and every list entry (`RetentionStore.purge`).

A log index ``<prefix>-YYYY.MM`` holds the lines of the jobs created in that month. It is deleted, whole and by
its exact name, once (1) the month ended more than the log retention ago — no job can be created in it any more —
and (2) in every space, no job created in that month is alive and the latest of them finished more than the log
retention ago. (2) costs each space one round trip per month (the status indexes are sorted by ``createdAt``, so
"alive in that month" is a range query), plus, once per space and month, a read of that month's jobs for their
latest finish, which is recorded: once none is alive it can only fall (removals), so the recorded value is a
safe upper bound.

Passes run in bounded batches. The background loop of each instance takes a turn (a key in Redis that expires
when the next pass is due) so that one instance works at a time; two passes at once would still be safe, since
each removal is decided again atomically where it happens, and only the one that removed counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from service.domain.clock import iso_from_ms, new_id, now_ms
from service.domain.jobs import JOB_STATUSES, TERMINAL_STATUSES
from service.observability import Metrics
from service.settings import Settings
from service.stores.es_logs import LogStore
from service.stores.redis_cache import ReadCache
from service.stores.redis_retention import MonthCensus, RetentionStore

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
JOBS_PER_BATCH = 100  # one script call: blocks Redis for well under a millisecond
SCAN_BATCH = 1000  # jobs read per round trip while finding a month's latest finish
SPACES_PER_CENSUS = 100  # spaces asked about a month in one round trip
# What one background pass removes at most; what is left is done by the next pass, which follows at once. Only
# removals are limited: looking at what stays is cheap, and a limit on it would let jobs or months that stay (say,
# thousands of jobs created long ago that finished only lately) hide the ones behind them from every pass.
JOBS_PER_SPACE_PER_PASS = 2000
INDICES_PER_PASS = 12
# How often passes are due, and how often each instance checks whether it is its turn.
PASS_EVERY_S = 600.0
CHECK_EVERY_S = 60.0
# Far longer than deleting an index takes; a deletion that failed is tried again once it lapsed.
INDEX_CLAIM_MS = 300_000


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one pass removes at most; None: everything (`joblens retention`, a person asking)."""

    jobs_per_space: int | None = JOBS_PER_SPACE_PER_PASS
    indices: int | None = INDICES_PER_PASS


BACKGROUND = Limits()
UNLIMITED = Limits(None, None)


@dataclass(frozen=True, slots=True)
class IndexDecision:
    index: str
    removed: bool  # deleted (or, in a dry run, would be)
    reason: str | None = None  # why it stays


@dataclass(slots=True)
class SpaceJobs:
    removed: int = 0  # removed (or, in a dry run, due)
    kept: Counter[str] = field(default_factory=Counter)  # finished before the cutoff by createdAt, kept: why


@dataclass(slots=True)
class RetentionReport:
    dry_run: bool
    jobs: dict[str, SpaceJobs] = field(default_factory=dict)  # by space, only spaces with something to say
    indices: list[IndexDecision] = field(default_factory=list)
    complete: bool = True  # False: a limit was reached, more may be due

    @property
    def jobs_removed(self) -> int:
        return sum(space.removed for space in self.jobs.values())

    @property
    def indices_removed(self) -> int:
        return sum(decision.removed for decision in self.indices)

    def lines(self) -> list[dict[str, Any]]:
        """What `joblens retention` prints, one JSON object a line: each space with jobs that went (or, in a dry
        run, would go) or stayed though created before the cutoff (by reason), each index looked at, a summary."""
        lines: list[dict[str, Any]] = [
            {"space": space_id, "jobs": space.removed, "kept": dict(sorted(space.kept.items()))}
            for space_id, space in self.jobs.items()
        ]
        removed = "would remove" if self.dry_run else "removed"
        lines += [
            {"index": d.index, "action": removed if d.removed else "kept", "reason": d.reason} for d in self.indices
        ]
        summary = {"jobs": self.jobs_removed, "indices": self.indices_removed, "complete": self.complete}
        lines.append({"dryRun": self.dry_run, **summary})
        return lines


def retention_on(settings: Settings) -> bool:
    return settings.job_retention_days > 0 or settings.log_retention_days > 0


def month_of(prefix: str, index: str) -> tuple[str, int, int] | None:
    """``("YYYY.MM", start ms, end ms)`` of a monthly index of this deployment (the month is [start, end)), None
    for any other name (another deployment's prefix that shares ours, say ``joblogs-eu-2026.01``)."""
    head, _, month = index.rpartition("-")
    year, dot, number = month.partition(".")
    if head != prefix or dot != "." or len(year) != 4 or len(number) != 2 or not (year + number).isdecimal():
        return None
    if not month.isascii() or not 1 <= int(number) <= 12:
        return None
    start = datetime(int(year), int(number), 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return month, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class RetentionService:
    def __init__(
        self,
        store: RetentionStore,
        lines: LogStore,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._lines = lines
        self._settings = settings
        self._metrics = metrics
        self._clock = clock  # epoch ms; tests move it instead of waiting days

    async def run_when_due(self, stopping: asyncio.Event) -> RetentionReport | None:
        """The background loop's step: run passes if it is this instance's turn (None if not), one after the other
        while a limit left work, holding the turn meanwhile."""
        token = new_id()
        hold_ms = int(PASS_EVERY_S * 1000)
        if not await self._store.take_turn(token, hold_ms):
            return None
        while True:
            report = await self.run_pass(stopping=stopping)
            if report.complete or stopping.is_set() or not await self._store.hold_turn(token, hold_ms):
                return report

    async def run_pass(
        self, *, dry_run: bool = False, limits: Limits = BACKGROUND, stopping: asyncio.Event | None = None
    ) -> RetentionReport:
        """One pass: log indices first, then jobs. In that order a dry run shows what a pass would do: an index
        decision sees every job still there, removed by the same pass or not (recorded finishes stay)."""
        report = RetentionReport(dry_run)
        now = self._clock()
        if self._settings.log_retention_days > 0:
            await self._indices(report, now - self._settings.log_retention_days * DAY_MS, limits, stopping)
        if self._settings.job_retention_days > 0:
            await self._jobs(report, now - self._settings.job_retention_days * DAY_MS, limits, stopping)
        return report

    # ---- jobs ----------------------------------------------------------------------------------------------

    async def _jobs(
        self, report: RetentionReport, cutoff_ms: int, limits: Limits, stopping: asyncio.Event | None
    ) -> None:
        for space_id in await self._store.spaces():
            if stopping is not None and stopping.is_set():
                report.complete = False
                return
            space = SpaceJobs()
            for status in (status for status in JOB_STATUSES if status in TERMINAL_STATUSES):
                if not await self._jobs_of_status(space_id, status, cutoff_ms, space, report.dry_run, limits):
                    report.complete = False
                    break
            if space.removed or space.kept:
                report.jobs[space_id] = space

    async def _jobs_of_status(
        self, space_id: str, status: str, cutoff_ms: int, space: SpaceJobs, dry_run: bool, limits: Limits
    ) -> bool:
        """Remove the space's jobs of one terminal status past retention, batch by batch; False if the space's limit
        cut it short. Candidates are read from ``offset``: those removed leave the index, those kept stay before it."""
        offset = 0
        while limits.jobs_per_space is None or space.removed < limits.jobs_per_space:
            room = JOBS_PER_BATCH if limits.jobs_per_space is None else limits.jobs_per_space - space.removed
            batch = min(JOBS_PER_BATCH, room)
            job_ids = await self._store.finished_candidates(space_id, status, cutoff_ms, offset, batch)
            if not job_ids:
                return True
            outcomes = await self._store.purge(space_id, job_ids, cutoff_ms, apply=not dry_run)
            removed = sum(outcome in ("removed", "due") for outcome in outcomes)
            space.removed += removed
            space.kept.update(outcome for outcome in outcomes if outcome not in ("removed", "due", "gone"))
            if not dry_run:
                self._metrics.retention_jobs_removed.inc(removed)
            # entries removed (or found gone, and so unlisted) left the index; a dry run removes nothing
            offset += len(job_ids) if dry_run else sum(outcome not in ("removed", "gone") for outcome in outcomes)
        return False

    # ---- log indices ---------------------------------------------------------------------------------------

    async def _indices(
        self, report: RetentionReport, cutoff_ms: int, limits: Limits, stopping: asyncio.Event | None
    ) -> None:
        months = []
        for index in await self._lines.indices():  # oldest month first
            bounds = month_of(self._settings.index_prefix, index)
            if bounds is not None and bounds[2] <= cutoff_ms:  # (1): the month ended before the cutoff
                months.append((index, *bounds))
        spaces = await self._store.spaces() if months else []
        for index, month, start_ms, end_ms in months:
            if (stopping is not None and stopping.is_set()) or report.indices_removed == limits.indices:
                report.complete = False
                return
            reason = await self._why_kept(spaces, month, start_ms, end_ms, cutoff_ms, report.dry_run)
            if reason is not None:
                report.indices.append(IndexDecision(index, removed=False, reason=reason))
            elif report.dry_run:
                report.indices.append(IndexDecision(index, removed=True))
            else:
                await self._delete_index(report, spaces, index, month)

    async def _delete_index(self, report: RetentionReport, spaces: Sequence[str], index: str, month: str) -> None:
        if not await self._store.claim_index(index, new_id(), INDEX_CLAIM_MS):
            report.indices.append(IndexDecision(index, removed=False, reason="another pass is deleting it"))
            return
        if not await self._lines.delete_index(index):
            report.indices.append(IndexDecision(index, removed=False, reason="deleted by another pass"))
            return
        self._metrics.retention_indices_removed.inc()
        report.indices.append(IndexDecision(index, removed=True))
        log.info("retention: deleted log index %s", index)
        await self._store.forget_month(spaces, month)

    async def _why_kept(
        self, spaces: Sequence[str], month: str, start_ms: int, end_ms: int, cutoff_ms: int, dry_run: bool
    ) -> str | None:
        """Why a month's index must stay, by (2) of the module docstring; None if it may go."""
        for at in range(0, len(spaces), SPACES_PER_CENSUS):
            chunk = spaces[at : at + SPACES_PER_CENSUS]
            census = await self._store.month_census(chunk, month, start_ms, end_ms)
            for space_id, space in zip(chunk, census, strict=True):
                reason = await self._why_space_keeps(space_id, space, month, start_ms, end_ms, cutoff_ms, dry_run)
                if reason is not None:
                    return reason
        return None

    async def _why_space_keeps(
        self,
        space_id: str,
        census: MonthCensus,
        month: str,
        start_ms: int,
        end_ms: int,
        cutoff_ms: int,
        dry_run: bool,
    ) -> str | None:
        if census.alive:
            return f"space {space_id} has a job created in {month} that has not ended"
        if census.jobs == 0:
            return None
        latest = census.latest_finish_ms
        if latest is None:
            latest = await self._store.latest_finish(space_id, start_ms, end_ms, SCAN_BATCH)
            if latest is None:
                return f"the jobs of space {space_id} created in {month} changed while they were read"
            if not dry_run:  # a dry run changes nothing, not even this record
                await self._store.remember_month(space_id, month, latest)
        if latest > cutoff_ms:
            return f"a job of space {space_id} created in {month} finished at {iso_from_ms(latest)}"
        return None


def retention_service(
    redis: Redis, cache: ReadCache, es: AsyncElasticsearch, settings: Settings, metrics: Metrics
) -> RetentionService | None:
    """The service over these clients, or None when retention is off (both settings 0)."""
    if not retention_on(settings):
        return None
    return RetentionService(RetentionStore(redis, cache), LogStore(es, settings), settings, metrics)
