"""Metrics (Prometheus) and structured JSON logs.

Each app owns its own metrics registry, so several app instances in one process (tests) never share counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, TextIO

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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
        self.log_lines_ingested = Counter(
            "joblens_log_lines_ingested_total", "Log lines acknowledged to clients", registry=self.registry
        )
        self.watermark_lag = Histogram(
            "joblens_log_watermark_lag_lines",
            "Lines of a finished append still invisible to tailers because lower seqs are in flight",
            buckets=LAG_BUCKETS_LINES,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, status)
        child = self._request_children.get(labels)
        if child is None:  # looking a child up by label values costs more than observing: do it once per triple
            child = self._request_children[labels] = self.request_seconds.labels(route, method, str(status))
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as ``extra={"fields": {...}}`` are merged in."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": f"{self._utc_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()

    def _utc_second(self, second: int) -> str:
        if second != self._second:  # formatting a time costs more than the rest of a record: once per second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """Lines logged during one turn of the event loop leave in one write at its end, not one write each.
    Outside a running loop (start-up, other threads) a line is written at once; `flush` writes what waits."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if len(self._waiting) > 1:
            return  # a write is already scheduled
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            if self._waiting:
                lines, self._waiting = self._waiting, []
                with contextlib.suppress(OSError, ValueError):  # a closed stream must not fail a request
                    self.stream.write("\n".join(lines) + "\n")
            super().flush()


def configure_json_logging(level: int = logging.INFO) -> None:
    # Records need no caller, thread or process lookups (documented logging switches; costly per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # one INFO line per ES request otherwise
