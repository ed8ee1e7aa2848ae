"""Log ingestion and reads: seq reservation in Redis, lines in Elasticsearch, the watermark between them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from service.domain.clock import ms_from_iso, now_ms
from service.domain.errors import JobNotFound, SearchTooLong, Unavailable
from service.domain.logs import LogQuery, SpaceLogQuery, build_docs, in_ranges, ingest_answer, parse_log_body
from service.domain.search import matcher_for
from service.observability import Metrics
from service.settings import Settings
from service.stores.es_logs import (
    CANDIDATE_BATCH,
    UNSEARCHABLE_FETCH_MAX,
    BulkFailed,
    LogPage,
    LogStore,
    SeqCollision,
    line_view,
)
from service.stores.redis_jobs import JobStore
from service.stores.redis_logseq import LogSeqStore, ReadWindow, Reservation, SeqState

log = logging.getLogger(__name__)
CLEANUP_JOBS_PER_PASS = 100

# Candidates a space search looks at for one page at most (see `LogService.search_space`).
SPACE_SCAN_MAX = 5000


def _sort_position(source: dict[str, Any]) -> tuple[int, str, int]:
    return ms_from_iso(source["created_at"]), source["job_id"], int(source["seq"])


def _acknowledged(source: dict[str, Any], window: ReadWindow | None) -> bool:
    if window is None:
        return False
    seq = int(source["seq"])
    return seq <= window.durable_seq and not in_ranges(seq, window.abandoned)


def _tails_unsearchable(window: ReadWindow, query: LogQuery) -> bool:
    """Whether a read is an ``after`` page over acknowledged lines not yet searchable, few enough to be read by id
    (`LogStore.tail`) rather than made searchable by a refresh first; a tailer that is caught up needs neither.
    The page then covers up to the durability watermark: every seq at or below it is acknowledged or abandoned,
    and a get sees every acknowledged line."""
    if query.mode != "after" or window.durable_seq <= window.visible_seq:
        return False  # everything acknowledged is searchable (no refresh either way), or not a tail
    return window.durable_seq - max(query.seq, window.visible_seq) <= UNSEARCHABLE_FETCH_MAX


class LogService:
    def __init__(
        self, seqs: LogSeqStore, lines: LogStore, jobs: JobStore, settings: Settings, metrics: Metrics
    ) -> None:
        self._seqs = seqs
        self._lines = lines
        self._jobs = jobs
        self._settings = settings
        self._metrics = metrics

    async def append(
        self, space_id: str, job_id: str, body: bytes, content_type: str, idempotency_key: str | None
    ) -> bytes:
        """Store the lines of one request; the answer JSON is returned once every line is durable (acknowledged).
        Readers make them searchable when they look (`_visible_window`)."""
        raw_lines = parse_log_body(body, content_type, self._settings.max_log_lines)
        docs = build_docs(raw_lines, job_id, space_id, now_ms())
        idempotency_digest = hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None
        body_digest = hashlib.sha256(body).hexdigest()
        lease_s = self._settings.log_lease_s
        reservation = await self._seqs.reserve(
            space_id,
            job_id,
            len(docs),
            int(lease_s * 1000),
            idempotency_digest,
            body_digest,
        )
        if isinstance(reservation, bytes):
            return reservation
        # Stop writing well inside the lease, so a range is never written after readers abandoned it.
        deadline = time.monotonic() + lease_s * 0.6
        try:
            await self._lines.index_lines(
                job_id, reservation.job_created_ms, reservation.job_name, reservation.first_seq, docs, deadline
            )
        except BaseException as exc:
            repaired = await self._give_up(space_id, job_id, reservation, docs, idempotency_digest, body_digest)
            if repaired and isinstance(exc, Exception):
                raise Unavailable("The log sequence was behind the stored lines and has been repaired; retry") from None
            if isinstance(exc, BulkFailed | SeqCollision):  # transport errors reach the error middleware's 503
                self._metrics.store_errors.labels("elasticsearch").inc()
                log.warning("log lines of job %s not stored: %s", job_id, exc)
                raise Unavailable("Elasticsearch could not store the log lines; nothing was stored") from exc
            raise
        answer = ingest_answer(len(docs), reservation.first_seq, reservation.last_seq)
        try:
            in_time, durable_seq = await self._seqs.finish(
                space_id, job_id, reservation, idempotency_digest, self._settings.idempotency_ttl_s, body_digest, answer
            )
        except Exception:
            # Redis failed after the lines were written, and whether it finished the range is unknown (its answer
            # may be what was lost). The client is told nothing was stored, so the lines go — unless an
            # Idempotency-Key is in use: if Redis did finish the range, it keeps this very answer for the key, and
            # a retry gets it; the lines must then exist. (If Redis did not, the range is abandoned when its lease
            # expires, and the janitor removes them.)
            if idempotency_digest is None:
                await self._delete_quietly(job_id, reservation)
            raise
        if not in_time:
            await self._delete_quietly(job_id, reservation)
            raise Unavailable("Storing the log lines took longer than their lease; nothing was stored")
        self._metrics.log_lines_ingested.inc(len(docs))
        self._metrics.watermark_lag.observe(max(0, reservation.last_seq - durable_seq))
        return answer

    async def _give_up(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        docs: list[dict[str, Any]],
        idempotency_digest: str | None,
        body_digest: str,
    ) -> bool:
        """A failed append: remove what of it reached the index and finish its range. Returns True when the range
        turned out to hold older lines (the seq counter was behind the index, see `SeqCollision`): those stay
        (the range is shown) and the counter is moved past the highest stored seq. Otherwise the range is
        abandoned: readers never show it.

        Only lines this append sent (same seq, same line id) are deleted; every step is best effort, since one
        store or the other may be down: a range left in flight is abandoned when its lease expires."""
        sent = {reservation.first_seq + offset: str(doc["id"]) for offset, doc in enumerate(docs)}
        created_ms = reservation.job_created_ms
        try:
            stored = await self._lines.stored_line_ids(job_id, created_ms, sent)
        except Exception as exc:
            log.warning(
                "could not look at failed log range %s of job %s (%s); abandoning it", reservation.member, job_id, exc
            )
            await self._release_quietly(space_id, job_id, reservation, idempotency_digest, body_digest, show=False)
            return False
        older = {seq for seq, line_id in stored.items() if line_id != sent[seq]}
        try:
            await self._lines.delete_lines(job_id, created_ms, [seq for seq in stored if seq not in older])
        except Exception as exc:  # abandoning the range hides what could not be deleted -- unless it must be shown
            log.warning("could not delete failed log range %s of job %s (%s)", reservation.member, job_id, exc)
        # older lines were acknowledged once and stay visible, even beside a line of this append not deleted
        await self._release_quietly(space_id, job_id, reservation, idempotency_digest, body_digest, show=bool(older))
        if not older:
            return False
        log.error(
            "log seq counter of job %s was behind the index (%d seqs of range %s held older lines); "
            "Redis lost writes? repairing",
            job_id,
            len(older),
            reservation.member,
        )
        self._metrics.store_errors.labels("redis").inc()
        try:
            await self._seqs.catch_up(space_id, job_id, await self._lines.highest_seq(job_id, created_ms))
        except Exception as exc:  # the next append meets the same lines and repairs again
            log.warning("could not move the log seq counter of job %s: %s", job_id, exc)
        return True

    async def _release_quietly(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        idempotency_digest: str | None,
        body_digest: str,
        *,
        show: bool,
    ) -> None:
        """Finish a failed append's range, shown or abandoned; no answer is kept for its Idempotency-Key (a retry
        may proceed). Redis may be down: the range is then abandoned when its lease expires."""
        try:
            await self._seqs.finish(
                space_id,
                job_id,
                reservation,
                idempotency_digest,
                self._settings.idempotency_ttl_s,
                body_digest,
                None,
                show=show,
            )
        except Exception:
            log.warning("could not release log range %s of job %s; its lease will expire", reservation.member, job_id)

    async def _delete_quietly(self, job_id: str, reservation: Reservation) -> None:
        try:
            seqs = range(reservation.first_seq, reservation.last_seq + 1)
            await self._lines.delete_lines(job_id, reservation.job_created_ms, seqs)
        except Exception:
            log.warning("could not delete failed log range %s of job %s; reads exclude it", reservation.member, job_id)

    async def clean_up_abandoned(self, space_id: str, stopping: asyncio.Event | None = None) -> int:
        """The janitor: remove from the index what abandoned ranges of this space's jobs left there, then let
        readers forget those ranges. Only ranges abandoned longer than ``log_cleanup_grace_s`` ago are touched, so
        that a bulk request still on its way when its writer gave up cannot land after the clean-up. Returns how
        many ranges were cleaned; a job that fails (its index blocked, say) is logged and skipped."""
        abandoned_before = now_ms() - int(self._settings.log_cleanup_grace_s * 1000)
        cleaned = 0
        for job_id, flagged_ms in await self._seqs.jobs_to_clean(space_id, abandoned_before, CLEANUP_JOBS_PER_PASS):
            if stopping is not None and stopping.is_set():
                break
            try:
                created_ms, ranges = await self._seqs.abandoned_ranges(space_id, job_id)
                if created_ms is not None:  # a job that is gone has no lines to show anyway
                    for first, last in ranges:
                        await self._lines.delete_seq_range(job_id, created_ms, first, last)
                if await self._seqs.cleaned(space_id, job_id, flagged_ms, ranges):
                    cleaned += len(ranges)
            except Exception as exc:
                log.warning("log clean-up of job %s failed: %s", job_id, exc)
        return cleaned

    async def read(self, space_id: str, job_id: str, query: LogQuery) -> dict[str, Any]:
        page, _ = await self.read_covering(space_id, job_id, query)
        return page

    async def read_covering(self, space_id: str, job_id: str, query: LogQuery) -> tuple[dict[str, Any], int]:
        """A page as `read` answers it, and the seq up to which the page covers the job's log: every line at or
        below it that matches ``query`` and comes after the page's start is in the page (the watermark the read
        used, unless the page is full). What a stream following ``after`` moves its cursor to."""
        window = await self._seqs.read_window(space_id, job_id)
        page, shown_seq = await self._page(space_id, job_id, window, query)
        lines = page.lines
        cursor = {
            "mode": query.mode,
            "oldestSeq": lines[0]["seq"] if lines else None,
            "newestSeq": lines[-1]["seq"] if lines else None,
            "hasMore": page.has_more,
        }
        if query.mode == "around":  # a context view continues both ways: `before` oldestSeq, `after` newestSeq
            cursor |= {"hasOlder": page.has_older, "hasNewer": page.has_newer}
        answer = {"logs": lines, "cursor": cursor}
        covered = int(lines[-1]["seq"]) if page.has_more and query.mode != "latest" else shown_seq
        return answer, max(covered, query.seq if query.mode == "after" else 0)

    async def _page(self, space_id: str, job_id: str, window: ReadWindow, query: LogQuery) -> tuple[LogPage, int]:
        """The page ``query`` asks for, from ``window`` (just read), and the watermark it was read up to."""
        if _tails_unsearchable(window, query):
            # A tail read needs no refresh: what is acknowledged but not searchable yet is read by id.
            tail = await self._lines.tail(
                job_id, window.job_created_ms, window.visible_seq, window.durable_seq, window.abandoned, query
            )
            if tail is not None:
                return tail, window.durable_seq
        window = await self._made_visible(space_id, job_id, window)
        if window.visible_seq == 0:
            # Nothing to show yet, so nothing to ask: the job's index may not even exist, or (created this instant
            # by another writer's first bulk) have no started shard, which Elasticsearch answers with a 503.
            return LogPage([], has_more=False), 0
        page = await self._lines.search(job_id, window.job_created_ms, window.visible_seq, window.abandoned, query)
        return page, window.visible_seq

    async def export(self, space_id: str, job_id: str, query: LogQuery) -> AsyncIterator[list[dict[str, Any]]]:
        """Every line of the job visible now that matches ``query``'s levels and text, ascending, in batches."""
        window = await self._visible_window(space_id, job_id)
        if window.visible_seq == 0:
            return
        async for batch in self._lines.export_batches(
            job_id, window.job_created_ms, window.visible_seq, window.abandoned, query
        ):
            yield batch

    async def search_space(self, space_id: str, query: SpaceLogQuery) -> dict[str, Any]:
        """Lines of every job of the space matching ``query``, newest first, each with its job's id and name.

        Candidates are read in batches and kept when they match exactly (`WordMatcher`) and are acknowledged
        (at or below their job's durability watermark, outside its abandoned ranges: a line still being written
        is never shown). At most ``SPACE_SCAN_MAX`` candidates are looked at per page: the cursor then continues
        from the last one looked at, so a rare match among many near misses costs several short pages, never
        one long request."""
        matcher = matcher_for(query.words)
        timeout_s = self._settings.space_search_timeout_s
        deadline = time.monotonic() + timeout_s
        kept: list[tuple[dict[str, Any], tuple[int, str, int]]] = []
        position, scanned, exhausted = query.position, 0, False
        windows: dict[str, ReadWindow | None] = {}
        while len(kept) <= query.limit and not exhausted and scanned < SPACE_SCAN_MAX:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise SearchTooLong()
            batch = await self._lines.search_space(
                space_id,
                query,
                position,
                min(CANDIDATE_BATCH, query.limit + 1 if not scanned else CANDIDATE_BATCH),
                remaining_s,
            )
            if time.monotonic() > deadline:  # past its time, finished or not: the answer would come too late
                raise SearchTooLong()
            await self._load_windows(space_id, {source["job_id"] for source in batch.sources} - set(windows), windows)
            for source in batch.sources:
                scanned += 1
                position = _sort_position(source)
                if _acknowledged(source, windows.get(source["job_id"])) and (
                    matcher is None or matcher.verifies(source["message"])
                ):
                    kept.append((source, position))
                    if len(kept) > query.limit:
                        break
            exhausted = batch.exhausted and len(kept) <= query.limit
        page = kept[: query.limit]
        more = len(kept) > query.limit or not exhausted
        resume_at = page[-1][1] if len(kept) > query.limit else position
        names = await self._job_names(space_id, [source for source, _ in page])
        hits = [
            {
                "jobId": source["job_id"],
                "jobName": names.get(source["job_id"]),
                **line_view(source, matcher, query.highlight),
            }
            for source, _ in page
        ]
        next_cursor = query.cursor_after(resume_at) if more and resume_at is not None else None
        return {"logs": hits, "cursor": {"next": next_cursor, "hasMore": next_cursor is not None}}

    async def _load_windows(self, space_id: str, job_ids: set[str], windows: dict[str, ReadWindow | None]) -> None:
        async def one(job_id: str) -> None:
            try:
                windows[job_id] = await self._seqs.read_window(space_id, job_id)
            except JobNotFound:  # deleted since: its lines are no longer shown
                windows[job_id] = None

        await asyncio.gather(*(one(job_id) for job_id in job_ids))

    async def _job_names(self, space_id: str, sources: list[dict[str, Any]]) -> dict[str, str]:
        """job id → name: from the lines themselves, or (lines of indices not upgraded yet) from Redis."""
        names = {source["job_id"]: source["job_name"] for source in sources if source.get("job_name")}
        missing = {source["job_id"] for source in sources} - set(names)
        if missing:
            names |= await self._jobs.names(space_id, missing)
        return names

    async def seq_state(self, space_id: str, job_id: str) -> SeqState:
        """The job's seq counters (see `LogSeqStore.seq_state`), its watermarks moved over expired leases and
        over what is durable first."""
        await self._visible_window(space_id, job_id)
        return await self._seqs.seq_state(space_id, job_id)

    async def _visible_window(self, space_id: str, job_id: str) -> ReadWindow:
        """The read window, with every acknowledged line searchable: when the durability watermark is above the
        visibility one, a refresh of the index that begins after reading it (shared with every reader and
        clean-up of this process meanwhile) makes all of those lines searchable, and the visibility watermark
        rises to it. So a read issued after an append's answer includes its lines, without the append waiting."""
        return await self._made_visible(space_id, job_id, await self._seqs.read_window(space_id, job_id))

    async def _made_visible(self, space_id: str, job_id: str, window: ReadWindow) -> ReadWindow:
        """``window`` (just read) with every acknowledged line searchable (see `_visible_window`)."""
        if window.durable_seq <= window.visible_seq:
            return window
        await self._lines.make_searchable(window.job_created_ms)
        visible_seq = await self._seqs.reveal(space_id, job_id, window.durable_seq)
        return dataclasses.replace(window, visible_seq=visible_seq)
