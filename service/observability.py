"""Metrics (Prometheus) and structured JSON logs.

Each app owns its own metrics registry, so several app instances in one process (tests) never share counters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS_LINES = (0, 1, 10, 100, 1_000, 10_000, 100_000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as ``extra={"fields": {...}}`` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
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


def configure_json_logging(level: int = logging.INFO) -> None:
    # Records need no caller, thread or process lookups (documented logging switches; costly per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # one INFO line per ES request otherwise
