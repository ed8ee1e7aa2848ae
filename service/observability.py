"""Metrics (Prometheus) and structured JSON logs.

Each app owns its own metrics registry, so several app instances in one process (tests) never share counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from service.domain.clock import iso_from_ms, now_ms

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS_LINES = (0, 1, 10, 100, 1_000, 10_000, 100_000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self.request_seconds = Histogram(
            "joblens_http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "joblens_store_errors_total",
            "Requests that failed because a backing store was unavailable",
            ["store"],
            registry=self.registry,
        )
        self.requests_refused = Counter(
            "joblens_http_requests_refused_total",
            "Requests the HTTP parser refused, answered before any middleware (so not in the latency histogram)",
            ["status"],
            registry=self.registry,
        )
        self.log_lines_ingested = Counter(
            "joblens_log_lines_ingested_total", "Log lines acknowledged to clients", registry=self.registry
        )
        self.log_appends_unreplicated = Counter(
            "joblens_log_appends_unreplicated_total",
            "Appends answered before a Redis replica confirmed their finish (JOBLENS_REDIS_WAIT_TIMEOUT_S passed)",
            registry=self.registry,
        )
        self.watermark_lag = Histogram(
            "joblens_log_watermark_lag_lines",
            "Lines of a finished append still invisible to tailers because lower seqs are in flight",
            buckets=LAG_BUCKETS_LINES,
            registry=self.registry,
        )
        # Counted by the instance whose script or request removed the thing: summed over instances, each once.
        self.retention_jobs_removed = Counter(
            "joblens_retention_jobs_removed_total",
            "Finished jobs removed (with every key of theirs) because they were past JOBLENS_JOB_RETENTION_DAYS",
            registry=self.registry,
        )
        self.retention_indices_removed = Counter(
            "joblens_retention_indices_removed_total",
            "Monthly log indices deleted because every job they may hold was past JOBLENS_LOG_RETENTION_DAYS",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, status)
        child = self._request_children.get(labels)
        if child is None:  # looking a child up by label values costs more than observing: do it once per triple
            child = self._request_children[labels] = self.request_seconds.labels(route, method, str(status))
        child.observe(seconds)

    def count_refused(self, status: int) -> None:
        self.requests_refused.labels(str(status)).inc()

    def watch_read_cache(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Expose the read cache's counters, read at scrape time (nothing is added to a request)."""
        self.registry.register(_ReadCacheCollector(counts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ReadCacheCollector(Collector):
    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "joblens_read_cache_events",
            "Read cache: hits, misses, resets (everything dropped) and invalidations (keys Redis announced changed)",
            labels=["event"],
        )
        for event, count in self._counts().items():
            family.add_metric([event], count)
        yield family


# An API key anywhere in a message: aiohttp's parser, refusing a malformed request, quotes the bytes it read.
API_KEY_IN_TEXT = re.compile(r"emit_[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    return API_KEY_IN_TEXT.sub("emit_[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as ``extra={"fields": {...}}`` are merged in. Whatever looks
    like an API key is masked, whoever logged it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_from_ms(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class AccessLog:
    """One JSON line per request, in the shape of the other log lines (logger ``joblens.access``).

    Lines are buffered and written together, like nginx's ``access_log … buffer= flush=``: one write per request
    cost as much as serving a cached read. They leave at most ``FLUSH_INTERVAL_S`` after being logged, whenever
    ``BUFFER_BYTES`` pile up, and at shutdown. ``stream=None`` turns the log off."""

    FLUSH_INTERVAL_S = 0.25
    BUFFER_BYTES = 64 * 1024

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._lines: list[bytes] = []
        self._buffered_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def record(self, fields: dict[str, Any]) -> None:
        if self.stream is None:
            return
        head = {"ts": iso_from_ms(now_ms()), "level": "info", "logger": "joblens.access"}
        line = orjson.dumps({**head, "message": "request", **fields})
        self._lines.append(line)
        self._buffered_bytes += len(line) + 1
        if self._buffered_bytes >= self.BUFFER_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL_S, self.flush)
            except RuntimeError:  # no loop (a test calling directly): write at once
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines or self.stream is None:
            return
        lines, self._lines, self._buffered_bytes = self._lines, [], 0
        with contextlib.suppress(OSError, ValueError):  # a closed stream must not fail a request
            for chunk in _whole_lines_within(lines, ATOMIC_WRITE_BYTES):
                self.stream.write(chunk.decode())
                self.stream.flush()


# Several worker processes (`joblens serve --workers N`) share one stderr. A write of at most PIPE_BUF bytes to a
# pipe is atomic (POSIX), so chunks of whole lines within it never interleave with another worker's mid-line.
ATOMIC_WRITE_BYTES = 4096


def _whole_lines_within(lines: list[bytes], limit: int) -> Iterator[bytes]:
    """``lines`` (without their newlines) as chunks of whole lines of at most ``limit`` bytes each (a longer line
    is a chunk of its own)."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > limit:
            yield b"\n".join(chunk) + b"\n"
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        yield b"\n".join(chunk) + b"\n"


def configure_json_logging(level: int = logging.INFO) -> None:
    # Records need no caller, thread or process lookups (documented logging switches; costly per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # one INFO line per ES request otherwise
