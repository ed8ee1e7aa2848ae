"""Log ingestion and reads: seq reservation in Redis, lines in Elasticsearch, the watermark between them."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from service.domain.clock import now_ms
from service.domain.errors import Unavailable
from service.domain.logs import LogQuery, build_docs, ingest_answer, parse_log_body
from service.observability import Metrics
from service.settings import Settings
from service.stores.es_logs import BulkFailed, LogPage, LogStore, SeqCollision
from service.stores.redis_logseq import LogSeqStore, Reservation

log = logging.getLogger(__name__)


class LogService:
    def __init__(self, seqs: LogSeqStore, lines: LogStore, settings: Settings, metrics: Metrics) -> None:
        self._seqs = seqs
        self._lines = lines
        self._settings = settings
        self._metrics = metrics

    async def append(
        self, space_id: str, job_id: str, body: bytes, content_type: str, idempotency_key: str | None
    ) -> bytes:
        """Store the lines of one request; the answer JSON is returned only once every line is searchable."""
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
            await self._lines.index_lines(job_id, reservation.job_created_ms, reservation.first_seq, docs, deadline)
        except SeqCollision as collision:
            await self._recover(space_id, job_id, reservation, idempotency_digest, body_digest, collision)
            raise Unavailable("The log sequence was behind the stored lines and has been repaired; retry") from None
        except BaseException as exc:
            await self._abandon(space_id, job_id, reservation, idempotency_digest, body_digest)
            if isinstance(exc, BulkFailed):  # transport errors go on to the error middleware's 503 as they are
                self._metrics.store_errors.labels("elasticsearch").inc()
                log.warning("log lines of job %s not stored: %s", job_id, exc)
                raise Unavailable("Elasticsearch could not store the log lines; nothing was stored") from exc
            raise
        answer = ingest_answer(len(docs), reservation.first_seq, reservation.last_seq)
        try:
            in_time, visible_seq = await self._seqs.finish(
                space_id, job_id, reservation, idempotency_digest, self._settings.idempotency_ttl_s, body_digest, answer
            )
        except Exception:
            # Redis failed after the lines were written: the client is told nothing was stored, so remove them.
            # The range stays in flight until its lease expires, and is then abandoned (never shown).
            await self._delete_quietly(job_id, reservation)
            raise
        if not in_time:
            await self._delete_quietly(job_id, reservation)
            raise Unavailable("Storing the log lines took longer than their lease; nothing was stored")
        self._metrics.log_lines_ingested.inc(len(docs))
        self._metrics.watermark_lag.observe(max(0, reservation.last_seq - visible_seq))
        return answer

    async def _recover(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        idempotency_digest: str | None,
        body_digest: str,
        collision: SeqCollision,
    ) -> None:
        """The seq counter fell behind the index, so this range overlaps lines acknowledged earlier. Keep those:
        remove only what this append wrote, let readers show the range (it holds the older lines), and move the
        counter past the highest stored seq so that the client's retry gets fresh seqs."""
        log.error(
            "log seq counter of job %s was behind the index (%s); Redis lost writes? repairing", job_id, collision
        )
        self._metrics.store_errors.labels("redis").inc()
        await self._lines.delete_lines(job_id, reservation.job_created_ms, collision.ours)
        await self._release(space_id, job_id, reservation, idempotency_digest, body_digest, show=True)
        stored = await self._lines.highest_seq(job_id, reservation.job_created_ms)
        await self._seqs.catch_up(space_id, job_id, stored)

    async def _abandon(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        idempotency_digest: str | None,
        body_digest: str,
    ) -> None:
        """Give the range up (so the watermark moves on and readers never show it) and remove whatever part
        of it reached the index. Either step may fail while a store is down: the lease then expires by itself."""
        await self._delete_quietly(job_id, reservation)
        try:
            await self._release(space_id, job_id, reservation, idempotency_digest, body_digest, show=False)
        except Exception:
            log.warning("could not release log range %s of job %s; its lease will expire", reservation.member, job_id)

    async def _release(
        self,
        space_id: str,
        job_id: str,
        reservation: Reservation,
        idempotency_digest: str | None,
        body_digest: str,
        *,
        show: bool,
    ) -> None:
        """Finish a failed append's range: no answer is kept for its Idempotency-Key (a retry may proceed)."""
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

    async def _delete_quietly(self, job_id: str, reservation: Reservation) -> None:
        try:
            seqs = range(reservation.first_seq, reservation.last_seq + 1)
            await self._lines.delete_lines(job_id, reservation.job_created_ms, seqs)
        except Exception:
            log.warning("could not delete failed log range %s of job %s; reads exclude it", reservation.member, job_id)

    async def read(self, space_id: str, job_id: str, query: LogQuery) -> dict[str, Any]:
        window = await self._seqs.read_window(space_id, job_id)
        page: LogPage = await self._lines.search(
            job_id, window.job_created_ms, window.visible_seq, window.abandoned, query
        )
        lines = page.lines
        return {
            "logs": lines,
            "cursor": {
                "mode": query.mode,
                "oldestSeq": lines[0]["seq"] if lines else None,
                "newestSeq": lines[-1]["seq"] if lines else None,
                "hasMore": page.has_more,
            },
        }
