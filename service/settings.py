"""Runtime configuration: every knob is a ``JOBLENS_*`` environment variable, read once into `Settings`."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# In a source checkout (and an editable install) the templates sit beside the package.
DEFAULT_INDEX_TEMPLATES_DIR = str(Path(__file__).resolve().parents[1] / "index_templates")

# Timeouts, intervals and backoffs: positive (0 means "at once", "never" or a busy loop, depending on the
# library that gets it) and finite. A day is far above any useful value and far below those that overflow
# where they are turned into milliseconds.
MAX_DURATION_S = 86_400
_DURATION_ALLOWED = f"a number of seconds in (0, {MAX_DURATION_S}]"
# Redis refuses SET … EX 0 (or a negative TTL); a year is far below its own ceiling.
MAX_IDEMPOTENCY_TTL_S = 365 * 24 * 3600
# Elasticsearch index names are lower-case, at most 255 bytes, and may not start with '-', '_' or '+' (nor hold
# spaces or \/*?"<>|,#:). The prefix is also the template name, and "-YYYY.MM" (8 characters) is appended.
MAX_INDEX_PREFIX_CHARS = 255 - len("-YYYY.MM")
INDEX_PREFIX_PATTERN = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{MAX_INDEX_PREFIX_CHARS - 1}}}")
# Retention in whole days (0 = keep forever); a century is beyond any use and far from overflowing in milliseconds.
MAX_RETENTION_DAYS = 36_500
RETENTION_ALLOWED = f"an integer number of days from 0 (keep forever) to {MAX_RETENTION_DAYS}"


# The Redis clients time a reply out after this, and a request waits this long at most for a free connection.
REDIS_SOCKET_TIMEOUT_S = 5.0
# WAIT for replicas blocks the connection: it must answer well within the socket timeout.
MAX_REDIS_WAIT_S = REDIS_SOCKET_TIMEOUT_S - 1.0

# `joblens serve --workers`: far above any machine's cores; each worker holds its own Redis and ES connections.
MAX_WORKERS = 256


def cores_available() -> int:
    """The CPU cores this process may run on (its affinity mask, what Python 3.13's os.process_cpu_count() counts);
    a cgroup CPU quota is not seen, so a container limited to fewer cores sets JOBLENS_WORKERS itself."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SettingsError(ValueError):
    """An environment variable holds a value joblens cannot use; the message names it."""


def _setting(default: T, doc: str, *, shown_default: str | None = None) -> T:
    """A `Settings` field with its one-line description (and, where the default depends on the machine, how
    the configuration reference shows it). The reference in docs/configuration.md is rendered from these."""
    metadata = {"doc": doc} if shown_default is None else {"doc": doc, "shown_default": shown_default}
    field: T = dataclasses.field(default=default, metadata=metadata)
    return field


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("127.0.0.1", "Listen address; `joblens serve --host` overrides it.")
    port: int = _setting(8080, "Listen port; `joblens serve --port` overrides it.")
    workers: int = _setting(
        cores_available(),
        "Processes `joblens serve` runs on one port (SO_REUSEPORT), under a supervisor when more than 1;"
        " `joblens serve --workers` overrides it.",
        shown_default="one per CPU core",
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "Redis, standalone (`redis://`, `rediss://` or `unix://`) or a Redis Cluster named by seed nodes"
        " (`redis+cluster://[user:password@]host:port,host:port`, `rediss+cluster://` with TLS; the client finds"
        " the other nodes itself); every multi-key operation stays in one hash slot.",
    )
    redis_max_connections: int = _setting(
        256,
        "Connections to a standalone Redis per process; a command that finds them all busy waits for one (up to"
        " 5 s, then 503). A cluster client keeps its own connections per node.",
    )
    redis_wait_replicas: int | None = _setting(
        None,
        "Replicas that must hold an append's finish before it is answered (Redis `WAIT`), so that a failover keeps"
        " every acknowledged line: `auto` waits for 1 wherever the primary has a replica online (asked every 5 s),"
        " else for none; a number to always wait for that many, 0 for never.",
        shown_default="auto",
    )
    redis_wait_timeout_s: float = _setting(
        0.5,
        "How long an append waits for those replicas; past it the append is answered anyway and counted in"
        " `joblens_log_appends_unreplicated_total` (a replica stopped, cut off or far behind).",
    )
    elasticsearch_urls: tuple[str, ...] = _setting(
        ("http://127.0.0.1:9200",), "Elasticsearch nodes, comma-separated; requests are spread over them."
    )
    index_prefix: str = _setting(
        "joblogs", "Log lines go to `<prefix>-YYYY.MM` (the job's creation month); the index template is `<prefix>`."
    )
    index_templates_dir: str = _setting(
        DEFAULT_INDEX_TEMPLATES_DIR,
        "Folder holding the index template JSON, installed (idempotently) at start.",
        shown_default="`index_templates/` of the checkout",
    )
    index_shards: int = _setting(1, "Primary shards per monthly log index.")
    index_replicas: int = _setting(0, "Replicas per monthly log index; use at least 1 on a cluster.")
    index_refresh_interval_s: float = _setting(
        1.0,
        "Scheduled refresh interval of the log indices. Nothing waits for it: a read that needs newer lines"
        " refreshes the index itself, sharing the refresh with every reader meanwhile.",
    )
    connect_timeout_s: float = _setting(
        30.0,
        "At start, how long to retry connecting to Redis and Elasticsearch; then `joblens serve` exits with one"
        " line naming what is unreachable.",
    )
    es_request_timeout_s: float = _setting(10.0, "Timeout of one Elasticsearch request.")
    rate_limit_per_s: int = _setting(
        1000,
        "Requests per second per API key: a token bucket in Redis shared by every instance; each instance leases"
        " rate/20 tokens (at most 50) at a time, for at most 1 s.",
    )
    max_body_bytes: int = _setting(5 * 1024 * 1024, "Largest request body in bytes (413 above).")
    body_timeout_s: float = _setting(30.0, "A request body must have arrived within this (408 after).")
    idle_timeout_s: float = _setting(
        30.0, "A connection without a complete request (idle, half-open, trickling headers) is closed after this."
    )
    max_log_lines: int = _setting(1000, "Most lines in one log append (413 above).")
    log_lease_s: float = _setting(
        30.0,
        "Lease of an append's reserved seq range: the longest a writer that died can hold tailers back; a writer"
        " gives up after 60% of it.",
    )
    log_cleanup_grace_s: float = _setting(
        300.0,
        "How long an abandoned log range is left alone before the janitor removes what its writer left in the index.",
    )
    idempotency_ttl_s: int = _setting(24 * 3600, "How long the answer to an `Idempotency-Key` is kept.")
    timeout_loop_interval_s: float = _setting(
        0.5, "Tick of the background sweep (schedules, delivery and execution timeouts, callbacks)."
    )
    callback_timeout_s: float = _setting(10.0, "Timeout of one callback request.")
    callback_max_attempts: int = _setting(5, "Callback deliveries tried before it is recorded as `callback_failed`.")
    callback_backoff_s: float = _setting(1.0, "Wait before the second callback attempt; it doubles after each one.")
    background_tasks: bool = _setting(
        True, "Run the background duties (sweep, callbacks, log janitor) in this instance."
    )
    read_cache_entries: int = _setting(
        10_000,
        "Get Job and Get Progress answers kept in memory, kept exact by Redis invalidation.",
    )
    access_log: bool = _setting(True, "Write one JSON access-log line per request to stderr (in batches).")
    streams_max: int = _setting(
        1000, "Most log streams (`GET …/logs/stream`) open at once in this instance (503 above)."
    )
    streams_per_key_max: int = _setting(100, "Most log streams open at once per API key in this instance (429 above).")
    stream_heartbeat_s: float = _setting(15.0, "A log stream with nothing to say sends a `: ping` comment this often.")
    stream_poll_interval_s: float = _setting(
        1.0,
        "How often a followed job is checked (watermark, status, progress) without a wake-up: pub/sub notifications"
        " may be lost, this bounds the delay then. Once per job and filter per instance, not per stream.",
    )
    stream_quiet_period_s: float = _setting(
        2.0,
        "A stream of an ended job ends once nothing was appended, reserved or in flight for this long, so a late"
        " flush is still delivered.",
    )
    stream_queue_batches: int = _setting(
        16,
        "Batches of lines queued per stream; a stream that falls further behind reads from Elasticsearch by its"
        " own cursor until it catches up.",
    )
    stream_stuck_timeout_s: float = _setting(
        60.0, "A stream whose client reads nothing for this long is closed with an `error` event."
    )
    stream_max_duration_s: float = _setting(
        3600.0,
        "A stream open this long ends with a `reconnect` event (the client resumes by Last-Event-ID), so that"
        " connections move between instances and none is held forever.",
    )
    space_search_timeout_s: float = _setting(
        10.0, "A search across the jobs of a space that runs longer is cut: it answers 504 and asks to narrow it."
    )
    space_search_default_days: int = _setting(
        7, "A search across the jobs of a space without `since` looks this many days back from `until`."
    )
    space_search_max_days: int = _setting(
        31, "The widest `since`…`until` window of a search across a space (400 above)."
    )
    job_retention_days: int = _setting(
        0,
        "Finished jobs (completed, dead, killed) are removed, with their events, progress and log counters, this"
        " many days after they finished (`completedAt`); one whose callback is still due stays until it is settled."
        " 0 keeps jobs forever.",
    )
    log_retention_days: int = _setting(
        0,
        "A monthly log index is deleted (whole, by name) once its month ended this many days ago and every job"
        " created in that month has been finished this long. 0 keeps logs forever.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``JOBLENS_*`` variables; unknown or malformed values raise `SettingsError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            var = _env_name(spec.name)
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[spec.name] = _PARSERS[spec.name](var, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for ok, name, allowed in self._checks():
            if not ok:
                raise SettingsError(f"{_env_name(name)} must be {allowed}, got {getattr(self, name)!r}")

    def _checks(self) -> list[tuple[bool, str, str]]:
        """(holds, field name, what is allowed) for every rule a value must meet; also the "allowed" column of
        the configuration reference."""
        durations_s = (
            "connect_timeout_s",
            "es_request_timeout_s",
            "body_timeout_s",
            "idle_timeout_s",
            "timeout_loop_interval_s",
            "callback_timeout_s",
            "callback_backoff_s",
            "stream_heartbeat_s",
            "stream_poll_interval_s",
            "stream_quiet_period_s",
            "stream_stuck_timeout_s",
            "stream_max_duration_s",
            "space_search_timeout_s",
        )
        # Comparisons are False for NaN, so a range check also refuses "nan" (and "inf" lies above every bound).
        return [
            (1 <= self.port <= 65535, "port", "an integer between 1 and 65535"),
            (1 <= self.workers <= MAX_WORKERS, "workers", f"an integer between 1 and {MAX_WORKERS}"),
            (self.rate_limit_per_s >= 1, "rate_limit_per_s", "an integer >= 1"),
            (self.max_log_lines >= 1, "max_log_lines", "an integer >= 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes", "an integer >= 1024"),
            # Leases are kept in whole milliseconds (Redis PX): below 1 ms they would be 0, which Redis refuses.
            (0.001 <= self.log_lease_s <= 60, "log_lease_s", "a number of seconds in [0.001, 60]"),
            (
                # ES takes the interval in whole milliseconds; 0 would turn it off.
                0.001 <= self.index_refresh_interval_s <= MAX_DURATION_S,
                "index_refresh_interval_s",
                f"a number of seconds from 0.001 to {MAX_DURATION_S}",
            ),
            *((0 < getattr(self, name) <= MAX_DURATION_S, name, _DURATION_ALLOWED) for name in durations_s),
            (
                # A writer gives up within its lease; what it sent may still land a little later.
                self.log_lease_s <= self.log_cleanup_grace_s <= MAX_DURATION_S,
                "log_cleanup_grace_s",
                f"a number of seconds from JOBLENS_LOG_LEASE_S to {MAX_DURATION_S}",
            ),
            (
                1 <= self.idempotency_ttl_s <= MAX_IDEMPOTENCY_TTL_S,
                "idempotency_ttl_s",
                f"an integer number of seconds between 1 and {MAX_IDEMPOTENCY_TTL_S} (a year)",
            ),
            (self.index_shards >= 1, "index_shards", "an integer >= 1"),
            (self.redis_max_connections >= 1, "redis_max_connections", "an integer >= 1"),
            (
                self.redis_wait_replicas is None or self.redis_wait_replicas >= 0,
                "redis_wait_replicas",
                "auto or an integer >= 0",
            ),
            (
                0 < self.redis_wait_timeout_s <= MAX_REDIS_WAIT_S,
                "redis_wait_timeout_s",
                f"a number of seconds in (0, {MAX_REDIS_WAIT_S}]",
            ),
            (self.index_replicas >= 0, "index_replicas", "an integer >= 0"),
            (self.callback_max_attempts >= 1, "callback_max_attempts", "an integer >= 1"),
            (self.read_cache_entries >= 0, "read_cache_entries", "an integer >= 0 (0 turns the cache off)"),
            (self.streams_max >= 0, "streams_max", "an integer >= 0 (0 turns streams off)"),
            (self.streams_per_key_max >= 1, "streams_per_key_max", "an integer >= 1"),
            (self.stream_queue_batches >= 1, "stream_queue_batches", "an integer >= 1"),
            (self.space_search_max_days >= 1, "space_search_max_days", "an integer >= 1"),
            *(
                (0 <= getattr(self, name) <= MAX_RETENTION_DAYS, name, RETENTION_ALLOWED)
                for name in ("job_retention_days", "log_retention_days")
            ),
            (
                1 <= self.space_search_default_days <= self.space_search_max_days,
                "space_search_default_days",
                "an integer from 1 to JOBLENS_SPACE_SEARCH_MAX_DAYS",
            ),
            (
                INDEX_PREFIX_PATTERN.fullmatch(self.index_prefix) is not None,
                "index_prefix",
                f"lower-case letters, digits and '-', not starting with '-', at most {MAX_INDEX_PREFIX_CHARS}"
                " characters (log indices are named <prefix>-YYYY.MM)",
            ),
        ]


def _env_name(field_name: str) -> str:
    if field_name == "elasticsearch_urls":
        return "JOBLENS_ELASTICSEARCH_URL"
    return "JOBLENS_" + field_name.upper()


@dataclass(frozen=True, slots=True)
class _Parser(Generic[T]):
    """Turns a variable's text into a field's type; ``allowed`` is what the error message (and the reference)
    says the text must be."""

    convert: Callable[[str], T]
    allowed: str

    def __call__(self, var: str, raw: str) -> T:
        try:
            return self.convert(raw.strip())
        except ValueError:
            raise SettingsError(f"{var} must be {self.allowed}, got {raw!r}") from None


def _typed(convert: Callable[[str], T], allowed: str) -> _Parser[T]:
    return _Parser(convert, allowed)


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE_WORDS:
        return True
    if lowered in _FALSE_WORDS:
        return False
    raise ValueError(raw)


def _replica_count(raw: str) -> int | None:
    return None if raw.lower() == "auto" else int(raw)


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if not raw.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(raw)
        return raw

    return convert


REDIS_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def redis_cluster_seeds(url: str) -> tuple[tuple[str, int], ...] | None:
    """The (host, port) seed nodes of a `redis+cluster://` URL, None for a standalone URL; `ValueError` if a seed
    is not ``host:port`` or the URL names a database other than 0 (a cluster has only that one)."""
    scheme, _, rest = url.partition("://")
    if scheme not in REDIS_CLUSTER_SCHEMES:
        return None
    netloc, _, path = rest.partition("/")
    if path.split("?")[0] not in ("", "0"):
        raise ValueError(url)
    seeds = []
    for seed in netloc.rpartition("@")[2].split(","):
        host, _, port = seed.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(url)
        seeds.append((host.strip("[]"), int(port)))
    return tuple(seeds)


def _redis_url(raw: str) -> str:
    url = _url(("redis", "rediss", "unix", *REDIS_CLUSTER_SCHEMES))(raw)
    redis_cluster_seeds(url)  # a cluster URL must name its seeds well
    return url


def _url_list(raw: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not urls:
        raise ValueError(raw)
    return tuple(_url(("http", "https"))(u) for u in urls)


_INT = _typed(int, "an integer")
_FLOAT = _typed(float, "a number")
_STR = _typed(str, "a string")

_PARSERS: dict[str, _Parser[Any]] = {
    "host": _STR,
    "port": _INT,
    "workers": _INT,
    "redis_url": _typed(_redis_url, "a redis:// URL"),  # or redis+cluster://…: the description says so
    "redis_max_connections": _INT,
    "redis_wait_replicas": _typed(_replica_count, "auto or an integer >= 0"),
    "redis_wait_timeout_s": _FLOAT,
    "elasticsearch_urls": _typed(_url_list, "comma-separated http(s):// URLs"),
    "index_prefix": _STR,
    "index_templates_dir": _STR,
    "index_shards": _INT,
    "index_replicas": _INT,
    "index_refresh_interval_s": _FLOAT,
    "connect_timeout_s": _FLOAT,
    "es_request_timeout_s": _FLOAT,
    "rate_limit_per_s": _INT,
    "max_body_bytes": _INT,
    "body_timeout_s": _FLOAT,
    "idle_timeout_s": _FLOAT,
    "max_log_lines": _INT,
    "log_lease_s": _FLOAT,
    "log_cleanup_grace_s": _FLOAT,
    "idempotency_ttl_s": _INT,
    "timeout_loop_interval_s": _FLOAT,
    "callback_timeout_s": _FLOAT,
    "callback_max_attempts": _INT,
    "callback_backoff_s": _FLOAT,
    "background_tasks": _typed(_bool, "true or false"),
    "read_cache_entries": _INT,
    "access_log": _typed(_bool, "true or false"),
    "streams_max": _INT,
    "streams_per_key_max": _INT,
    "stream_heartbeat_s": _FLOAT,
    "stream_poll_interval_s": _FLOAT,
    "stream_quiet_period_s": _FLOAT,
    "stream_queue_batches": _INT,
    "stream_stuck_timeout_s": _FLOAT,
    "stream_max_duration_s": _FLOAT,
    "space_search_timeout_s": _FLOAT,
    "space_search_default_days": _INT,
    "space_search_max_days": _INT,
    "job_retention_days": _INT,
    "log_retention_days": _INT,
}


# ---- the configuration reference (docs/configuration.md) ----------------------------------------------------

_REFERENCE_INTRO = """\
# Configuration

<!-- Generated from service/settings.py by `make docs` (python -m service.settings); do not edit by hand. -->

joblens reads its configuration once, at start, from `JOBLENS_*` environment variables into the frozen
`service.settings.Settings`. A variable that is unset or empty keeps its default; a value joblens cannot use
stops the start with a message naming the variable and what it must be. The defaults are safe for a laptop
(loopback addresses, modest limits); nothing secret has a default.
Booleans are {true} or {false}, in any case.

The local development stack (`joblens stack`) has variables of its own, described in
[operations.md](operations.md).
"""


def configuration_reference() -> str:
    """The configuration reference as Markdown: one row per `Settings` field, from the field's description,
    its default, its parser and the rules of `Settings.validate`."""
    defaults = Settings()
    rules = {name: allowed for _, name, allowed in defaults._checks()}
    lines = [
        _REFERENCE_INTRO.format(true=_words(_TRUE_WORDS), false=_words(_FALSE_WORDS)),
        "| Variable | Default | Allowed | Description |",
        "|---|---|---|---|",
    ]
    for spec in dataclasses.fields(Settings):
        shown_default = spec.metadata.get("shown_default") or f"`{_shown(getattr(defaults, spec.name))}`"
        allowed = rules.get(spec.name, _PARSERS[spec.name].allowed)
        cells = (f"`{_env_name(spec.name)}`", shown_default, allowed, spec.metadata.get("doc", ""))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(f"`{word}`" for word in words)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: outside `code`, ``<`` is escaped (``<prefix>`` would read as an HTML tag);
    ``|`` would end the cell anywhere."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "\\<")
    return "`".join(parts).replace("|", "\\|")


if __name__ == "__main__":
    print(configuration_reference(), end="")
