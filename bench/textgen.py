"""Realistic log lines, fast: levels, ids, paths, numbers and words; ULIDs and ISO times without datetime.

Everything is driven by one `random.Random`, so a seed gives the same lines again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from service.domain.clock import ulid_of

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
LEVEL_WEIGHTS = (3, 17, 62, 10, 7, 1)

WORDS = (
    "order",
    "invoice",
    "payment",
    "user",
    "account",
    "session",
    "token",
    "image",
    "thumbnail",
    "video",
    "frame",
    "chunk",
    "record",
    "batch",
    "export",
    "import",
    "report",
    "mail",
    "queue",
    "worker",
    "shard",
    "replica",
    "index",
    "segment",
    "cache",
    "bucket",
    "object",
    "manifest",
    "customer",
    "product",
    "price",
    "stock",
    "cart",
    "checkout",
    "refund",
    "shipment",
    "label",
    "address",
    "region",
    "tenant",
    "plan",
    "billing",
    "usage",
    "metric",
    "event",
    "webhook",
    "callback",
    "schedule",
    "cron",
    "backup",
    "snapshot",
    "archive",
    "partition",
    "table",
    "row",
    "column",
    "schema",
    "migration",
    "lock",
    "lease",
    "heartbeat",
    "job",
    "task",
    "step",
    "stage",
    "pipeline",
    "build",
    "artifact",
    "deploy",
    "release",
    "config",
    "secret",
    "certificate",
    "dns",
    "proxy",
    "upstream",
    "gateway",
    "client",
    "server",
    "node",
    "pod",
    "container",
    "volume",
    "disk",
    "memory",
    "cpu",
    "thread",
    "socket",
    "stream",
    "buffer",
    "packet",
    "frame",
    "header",
    "payload",
    "body",
)
RESOURCES = ("users", "orders", "invoices", "images", "reports", "exports", "accounts", "products", "files")
MODULES = ("resize", "billing", "ingest", "mailer", "exporter", "sync", "scheduler", "storage", "auth")
FUNCS = ("run", "handle", "process_batch", "flush", "upload", "fetch_page", "commit", "render", "parse_row")
ERRORS = ("ValueError", "TimeoutError", "KeyError", "ConnectionResetError", "PermissionError", "OSError")
EXTENSIONS = ("png", "jpg", "csv", "json", "pdf", "parquet", "txt", "gz")
HOSTS = tuple(f"worker-{n}" for n in range(1, 25))
SOURCES = ("stdout", "stderr", "app", "worker", "sdk", "ffmpeg", "db")
STATUS_CODES = (200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 409, 500, 502, 503)

Template = Callable[["LineGen"], str]


class LineGen:
    """Random log lines; ``line()`` returns ``(level, message)``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # Zipf-like word popularity: a few words are everywhere, most are rare.
        self._word_weights = [1.0 / (rank + 1) for rank in range(len(WORDS))]
        self._words = rng.choices(WORDS, self._word_weights, k=4096)
        self._levels = rng.choices(LEVELS, LEVEL_WEIGHTS, k=4096)
        self._cursor = 0

    def word(self) -> str:
        self._cursor = (self._cursor + 1) & 4095
        if self._cursor == 0:
            self._words = self.rng.choices(WORDS, self._word_weights, k=4096)
        return self._words[self._cursor]

    def num(self, high: int) -> int:
        return int(self.rng.random() * high)

    def path(self) -> str:
        extension = self.rng.choice(EXTENSIONS)
        return f"{self.rng.choice(RESOURCES)}/{self.num(100000)}/{self.word()}-{self.num(999)}.{extension}"

    def ulid(self) -> str:
        return ulid_at(int(time.time() * 1000), self.rng)

    def line(self) -> tuple[str, str]:
        level = self._levels[self.num(4096)]
        templates = TEMPLATES[level]
        return level, templates[self.num(len(templates))](self)


def _info_templates() -> list[Template]:
    return [
        lambda g: (
            f"GET /api/v2/{g.rng.choice(RESOURCES)}/{g.num(10**6)}/{g.word()} "
            f"{g.rng.choice(STATUS_CODES)} in {g.num(900)}ms"
        ),
        lambda g: f"processed {g.num(5000)} {g.word()} records from s3://bucket-{g.num(40)}/{g.path()}",
        lambda g: f"uploaded {g.path()} ({g.num(10**7)} bytes) to bucket-{g.num(40)}",
        lambda g: f"resizing image {g.path()} to {g.num(4000)}x{g.num(3000)}",
        lambda g: f"{g.rng.choice(HOSTS)} picked job {g.ulid()} from queue {g.word()}",
        lambda g: f"checkpoint {g.num(100)}/100: {g.word()} {g.word()} done",
        lambda g: f"user {g.num(10**6)} updated {g.word()} {g.num(10**5)} in {g.rng.choice(RESOURCES)}",
        lambda g: f"sent {g.word()} mail to customer {g.num(10**6)} via smtp-{g.num(4)}",
    ]


def _debug_templates() -> list[Template]:
    return [
        lambda g: f"cache {g.rng.choice(('hit', 'miss', 'miss'))} for key {g.word()}:{g.num(10**6)}",
        lambda g: f"sql SELECT * FROM {g.rng.choice(RESOURCES)} WHERE id = {g.num(10**6)} took {g.num(80)}ms",  # noqa: S608
        lambda g: f"parsed {g.num(20000)} rows from {g.path()}",
        lambda g: f"{g.rng.choice(MODULES)}.{g.rng.choice(FUNCS)} {g.word()}={g.num(1000)} {g.word()}={g.word()}",
    ]


def _trace_templates() -> list[Template]:
    return [
        lambda g: f"enter {g.rng.choice(MODULES)}.{g.rng.choice(FUNCS)} args=({g.num(10**6)}, {g.word()})",
        lambda g: f"exit {g.rng.choice(MODULES)}.{g.rng.choice(FUNCS)} in {g.num(5000)}us",
    ]


def _warn_templates() -> list[Template]:
    return [
        lambda g: f"slow request GET /api/v2/{g.rng.choice(RESOURCES)}/{g.num(10**6)} took {g.num(9000)}ms",
        lambda g: f"retrying request {g.ulid()} after {g.num(3000)}ms (attempt {1 + g.num(5)}/5)",
        lambda g: f"disk usage at {70 + g.num(30)}% on /var/lib/{g.word()}",
        lambda g: f"connection timeout to cache-{g.num(8)}.internal:6379 after {g.num(5000)}ms, retrying",
    ]


def _error_templates() -> list[Template]:
    return [
        lambda g: f"connection timeout to db-{g.num(8)}.internal:5432 after {g.num(30000)}ms",
        lambda g: f"failed to upload {g.path()}: {g.rng.choice(ERRORS)}: {g.word()} {g.word()}",
        lambda g: (
            f"exception in {g.rng.choice(MODULES)}.{g.rng.choice(FUNCS)}: "
            f"{g.rng.choice(ERRORS)}: {g.word()} {g.word()} {g.num(1000)}"
        ),
        lambda g: f"request {g.ulid()} failed with status {g.rng.choice((500, 502, 503, 504))}",
    ]


def _fatal_templates() -> list[Template]:
    return [lambda g: f"{g.rng.choice(HOSTS)} crashed: out of memory after {g.num(10**6)} records"]


TEMPLATES: dict[str, list[Template]] = {
    "trace": _trace_templates(),
    "debug": _debug_templates(),
    "info": _info_templates(),
    "warn": _warn_templates(),
    "error": _error_templates(),
    "fatal": _fatal_templates(),
}

# Two-word searches that real users would type, each with the levels they would pick.
SEARCHES: tuple[tuple[str, str], ...] = (
    ("connection timeout", "error,warn"),
    ("retrying request", "warn"),
    ("failed upload", "error"),
    ("cache miss", "debug"),
    ("slow request", "warn,error"),
    ("resizing image", "info"),
)


def ulid_at(epoch_ms: int, rng: random.Random) -> str:
    """A ULID (26 Crockford characters) for ``epoch_ms`` with 80 random bits."""
    return ulid_of(epoch_ms, rng.getrandbits(80))


class IsoClock:
    """ISO-8601 UTC with milliseconds (``2025-02-24T10:30:00.000Z``), cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, epoch_ms: int) -> str:
        second = epoch_ms // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{epoch_ms % 1000:03d}Z"


def line_extras(gen: LineGen) -> tuple[str | None, dict[str, Any] | None]:
    """The optional ``source`` and ``metadata`` of a line, as real workers send them."""
    roll = gen.num(100)
    source = None if roll < 30 else SOURCES[roll % len(SOURCES)]
    if roll < 60:
        return source, None
    return source, {"host": HOSTS[roll % len(HOSTS)], "attempt": 1 + roll % 3, "pid": 1000 + gen.num(30000)}
