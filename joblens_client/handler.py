"""`JoblensLogHandler`: a `logging.Handler` that ships a worker's log records to its job's log.

- ``emit`` never does I/O: it formats the record, encodes it as a log line and queues it. A background thread
  sends the queue in batches (at most ``batch_lines`` lines and ``batch_bytes`` bytes; a partial batch once its
  oldest line waited ``flush_interval_s``), one batch at a time, so lines arrive in the order they were logged.
- Each batch is encoded once, with its own ``Idempotency-Key``, and sent again byte for byte with that key until
  joblens acknowledges it: a retry after a restart, a timeout or a 503 never appends a line twice, and a line is
  never lost while the handler waits for joblens.
- **When joblens is unreachable, memory stays bounded**: at most ``max_buffered_lines`` lines wait. A record
  that finds the queue full waits up to ``block_s`` for room (default 0: it does not wait), then is dropped and
  counted (``stats.dropped_full``). A ``warn`` line saying how many records were dropped is sent where they
  would have been, so the gap shows in the job's log itself.
- A batch the server refuses for good (400 or 413: nothing was stored) is sent again line by line, so only the
  offending line is dropped (``stats.dropped_refused``); 401, 403 and 404 drop the batch (``dropped_refused``).
- ``flush()`` waits (up to ``close_timeout_s``) until everything queued before it is acknowledged; ``close()``
  flushes, then drops and counts what is left (``dropped_at_close``). Both run at interpreter exit (``atexit``,
  and `logging.shutdown`).
- Records logged by the handler's own threads (its sender, the client's event loop: aiohttp, asyncio) are never
  shipped: they could only report on the shipping itself, and would feed it forever.

Mapping: level (``WARNING`` → ``warn``, ``CRITICAL`` → ``fatal``, below ``DEBUG`` → ``trace``), logger name →
``source``, the record's time → ``loggedAt``, the attributes named in ``extras`` (``logger.info(..., extra={...})``)
→ ``metadata``; the message is the handler's formatter's output (a traceback included).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from joblens_client.backoff import Backoff
from joblens_client.client import appended_body, new_idempotency_key
from joblens_client.errors import BadRequest, Conflict, JoblensError, RateLimited, ServerError, TooLarge, Unavailable
from joblens_client.records import iso_time
from joblens_client.sync import Joblens

__all__ = ["HandlerStats", "JoblensLogHandler"]

MAX_MESSAGE_BYTES = 32 * 1024  # the server's limit per message
MAX_SOURCE_CHARS = 256
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 8
MAX_BATCH_LINES = 1000  # the server's default JOBLENS_MAX_LOG_LINES
TRUNCATED = " …[truncated]"
JOB_ATTRIBUTE = "joblens_job_id"  # extra={"joblens_job_id": ...} sends one record to another job
# Transient failures: the batch stays and is sent again, with the same key, after a backoff.
TRANSIENT = (Unavailable, RateLimited, Conflict, ServerError)


def level_of(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "fatal"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug" if levelno >= logging.DEBUG else "trace"


def fit_utf8(text: str, limit: int) -> str:
    """``text`` cut (on a character boundary) so that it encodes in at most ``limit`` bytes."""
    if len(text) * 4 <= limit:
        return text
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return text
    mark = TRUNCATED.encode()
    return encoded[: limit - len(mark)].decode("utf-8", errors="ignore") + TRUNCATED


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can hold it: containers kept to a bounded depth, anything else as its ``str``."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth >= MAX_METADATA_DEPTH:
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item, depth + 1) for item in value]
    if isinstance(value, datetime):
        return iso_time(value) if value.tzinfo else value.isoformat()
    return str(value)


def iso_of_timestamp(created_s: float) -> str:
    return iso_time(datetime.fromtimestamp(created_s, UTC))


@dataclass(frozen=True, slots=True)
class HandlerStats:
    sent: int  # lines joblens acknowledged
    buffered: int  # lines waiting
    dropped_full: int  # records dropped because the queue was full (joblens unreachable or too slow)
    dropped_refused: int  # lines joblens refused (a bad line; a key without jobs:log; an unknown job)
    dropped_at_close: int  # lines still waiting when close() gave up
    ignored: int  # records with no job to go to
    last_error: str | None

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_refused + self.dropped_at_close


@dataclass(slots=True)
class Entry:
    job_id: str
    encoded: bytes
    queued_at: float  # time.monotonic()
    dropped_after: int = 0  # records dropped right after this one (the queue was full): a notice follows it


@dataclass(frozen=True, slots=True)
class Batch:
    """What is sent, fixed once formed: the first ``count`` queued lines, with a notice after each line that
    drops followed, and first (``leading_drops`` > 0) a notice of drops that followed the batch before."""

    job_id: str
    count: int
    body: bytes
    key: str
    leading_drops: int


class JoblensLogHandler(logging.Handler):
    """Ships log records to the log of ``job_id`` (which may be changed as the worker moves to another job; a
    record can name its own with ``extra={"joblens_job_id": ...}``). ``client``: a `Joblens` to send with (the
    handler never closes a client it was given); otherwise one is made from ``url`` and ``api_key``, by default
    ``JOBLENS_URL`` and ``JOBLENS_API_KEY``. See the module docstring for the policy."""

    def __init__(
        self,
        job_id: str | None = None,
        *,
        client: Joblens | None = None,
        url: str | None = None,
        api_key: str | None = None,
        level: int = logging.NOTSET,
        extras: Iterable[str] = (),
        batch_lines: int = 500,
        batch_bytes: int = 1_000_000,  # under aiohttp's 1 MiB, above which it warns about a raw body
        flush_interval_s: float = 1.0,
        max_buffered_lines: int = 10_000,
        block_s: float = 0.0,
        close_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(level)
        if not 1 <= batch_lines <= MAX_BATCH_LINES:
            raise ValueError(f"batch_lines must be 1 to {MAX_BATCH_LINES}")
        self.job_id = job_id
        self.extras = tuple(extras)
        self.batch_lines, self.batch_bytes = batch_lines, batch_bytes
        self.flush_interval_s = flush_interval_s
        self.max_buffered_lines = max(max_buffered_lines, batch_lines)
        self.block_s = block_s
        self.close_timeout_s = close_timeout_s
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=5.0)
        self._owns_client = client is None
        self._client = client or Joblens(
            url or os.environ.get("JOBLENS_URL", ""), api_key or os.environ.get("JOBLENS_API_KEY", ""), retries=2
        )
        self._cond = threading.Condition()
        self._queue: collections.deque[Entry] = collections.deque()
        self._batch: Batch | None = None  # formed and not yet acknowledged
        self._one_by_one = 0  # after a refused batch: this many lines go one per request
        self._queued_total = 0  # lines ever queued
        self._queued_bytes = 0  # of the lines waiting
        self._finished_total = 0  # of them, acknowledged or dropped
        self._flush_upto = 0  # send partial batches until _finished_total reaches this
        self._leading_drops = 0  # dropped after the lines of the batch in flight: noticed first in the next one
        self._counts = collections.Counter[str]()
        self._last_error: str | None = None
        self._stopping = False
        self._sender = threading.Thread(target=self._run, name="joblens-log-handler", daemon=True)
        self._sender.start()
        atexit.register(self.close)

    # ---- the logging side (any thread) ------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """As `logging.Handler.handle`, without the handler's lock: `emit` is thread-safe by itself, and so
        `logging.shutdown` (which holds that lock while it flushes) never holds up a thread that logs."""
        if threading.get_ident() in (self._sender.ident, self._client.loop_thread_ident):
            return False
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):  # Python 3.12: a filter may return a record to use instead
            record = kept
        if kept:
            self.emit(record)
        return bool(kept)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            job_id = getattr(record, JOB_ATTRIBUTE, None) or self.job_id
            encoded = orjson.dumps(self.line_of(record)) if job_id else b""
        except Exception:
            self.handleError(record)
            return
        with self._cond:
            if not job_id or self._stopping:
                self._counts["ignored"] += 1
                return
            if len(self._queue) >= self.max_buffered_lines and self.block_s > 0:
                self._cond.wait_for(lambda: len(self._queue) < self.max_buffered_lines, self.block_s)
            if len(self._queue) >= self.max_buffered_lines:
                self._counts["dropped_full"] += 1
                self._note_drop()
                return
            self._queue.append(Entry(str(job_id), encoded, time.monotonic()))
            self._queued_total += 1
            self._queued_bytes += len(encoded)
            if len(self._queue) == 1 or self._batch_ready():
                self._cond.notify_all()

    def line_of(self, record: logging.LogRecord) -> dict[str, Any]:
        """The log line of a record (see the module docstring for the mapping)."""
        line: dict[str, Any] = {
            "message": fit_utf8(self.format(record), MAX_MESSAGE_BYTES),
            "level": level_of(record.levelno),
            "source": record.name[:MAX_SOURCE_CHARS],
            "loggedAt": iso_of_timestamp(record.created),
        }
        metadata = {name: plain(getattr(record, name)) for name in self.extras if hasattr(record, name)}
        if metadata:
            line["metadata"] = metadata if len(orjson.dumps(metadata)) <= MAX_METADATA_BYTES else {"truncated": True}
        return line

    def flush(self) -> None:
        self.flush_within(self.close_timeout_s)

    def flush_within(self, timeout_s: float) -> bool:
        """Wait until every line queued so far is acknowledged (or dropped); False if ``timeout_s`` ran out."""
        with self._cond:
            target = self._queued_total
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._finished_total >= target or not self._sender.is_alive(), timeout_s
            ) and (self._finished_total >= target)

    def close(self) -> None:
        atexit.unregister(self.close)
        if not self._stopping:
            self.flush_within(self.close_timeout_s)
            with self._cond:
                self._stopping = True
                left = len(self._queue)
                self._counts["dropped_at_close"] += left
                self._finished_total += left
                self._queue.clear()
                self._queued_bytes = 0
                self._cond.notify_all()
            if self._owns_client:
                self._client.close()  # a send still under way fails at once
            self._sender.join(self.close_timeout_s)
        super().close()

    @property
    def stats(self) -> HandlerStats:
        with self._cond:
            counts = self._counts
            return HandlerStats(
                sent=counts["sent"],
                buffered=len(self._queue),
                dropped_full=counts["dropped_full"],
                dropped_refused=counts["dropped_refused"],
                dropped_at_close=counts["dropped_at_close"],
                ignored=counts["ignored"],
                last_error=self._last_error,
            )

    # ---- the sender thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._client.append_logs_body(batch.job_id, batch.body, batch.key)
            except TRANSIENT as error:
                self._note(error)
                with self._cond:  # the batch stays as it is: sent again, with its key, after the backoff
                    self._cond.wait_for(lambda: self._stopping, self.backoff.delay_s(failures))
                failures += 1
                continue
            except (BadRequest, TooLarge) as error:
                self._note(error)
                self._finish(batch, "dropped_refused" if batch.count == 1 else None)
            except JoblensError as error:  # 401, 403, 404: no retry can succeed
                self._note(error)
                self._finish(batch, "dropped_refused")
            except Exception as error:  # the client was closed under us: we are stopping
                self._last_error = f"{type(error).__name__}: {error}"
                with self._cond:
                    if self._stopping:
                        return
                continue
            else:
                self._finish(batch, "sent")
            failures = 0

    def _next_batch(self) -> Batch | None:
        """The batch to send now, waiting for one to be due; None once stopping. Called holding the lock."""
        while not self._stopping:
            if self._batch is not None:
                return self._batch
            wait_s = self._due_in()
            if wait_s <= 0:
                self._batch = self._form_batch()
                return self._batch
            self._cond.wait(wait_s)
        return None

    def _due_in(self) -> float:
        if not self._queue:
            return self.flush_interval_s
        if self._batch_ready() or self._one_by_one > 0 or self._finished_total < self._flush_upto:
            return 0.0
        return self._queue[0].queued_at + self.flush_interval_s - time.monotonic()

    def _batch_ready(self) -> bool:
        return len(self._queue) >= self.batch_lines or self._queued_bytes >= self.batch_bytes

    def _form_batch(self) -> Batch:
        job_id = self._queue[0].job_id
        leading = self._leading_drops
        lines = [self._drop_notice(leading)] if leading else []
        size = sum(map(len, lines))
        most = 1 if self._one_by_one > 0 else self.batch_lines
        count = 0
        for entry in self._queue:
            if count >= most or entry.job_id != job_id or len(lines) + 2 > MAX_BATCH_LINES:
                break
            if count and size + len(entry.encoded) > self.batch_bytes:
                break
            lines.append(entry.encoded)
            if entry.dropped_after:
                lines.append(self._drop_notice(entry.dropped_after))
            size += len(entry.encoded) + 1
            count += 1
        return Batch(job_id, count, appended_body(lines), new_idempotency_key(), leading)

    def _note_drop(self) -> None:
        """A record was dropped: its notice goes right after the newest line queued, where the gap is; if that
        line is in the batch in flight (fixed), at the start of the next batch, which is the same place."""
        if self._batch is not None and len(self._queue) <= self._batch.count:
            self._leading_drops += 1
        else:
            self._queue[-1].dropped_after += 1

    def _drop_notice(self, dropped: int) -> bytes:
        message = f"joblens log handler: {dropped} log records were dropped here (its queue was full)"
        return orjson.dumps({"message": message, "level": "warn", "source": "joblens_client.handler"})

    def _finish(self, batch: Batch, outcome: str | None) -> None:
        """The batch is done: its lines leave the queue (sent, or dropped as ``outcome``); ``outcome`` None: it
        was refused as a whole and its lines are sent again one per request, so only a bad one is dropped."""
        with self._cond:
            self._batch = None
            if self._stopping:  # close() counted these lines as dropped: it was sending them as it gave up
                if outcome == "sent":
                    self._counts["sent"] += batch.count
                    self._counts["dropped_at_close"] -= batch.count
                return
            if outcome is None:
                self._one_by_one = batch.count
                return
            if outcome == "sent":
                self._leading_drops -= batch.leading_drops
            for _ in range(batch.count):
                entry = self._queue.popleft()
                self._queued_bytes -= len(entry.encoded)
                if outcome != "sent":
                    self._leading_drops += entry.dropped_after  # not noticed with it: with the next batch
            self._counts[outcome] += batch.count
            self._finished_total += batch.count
            if self._one_by_one:
                self._one_by_one -= batch.count
            self._cond.notify_all()

    def _note(self, error: JoblensError) -> None:
        self._last_error = f"{type(error).__name__}: {error}"
