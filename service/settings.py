"""Runtime configuration: every knob is a ``JOBLENS_*`` environment variable, read once into `Settings`."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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


class SettingsError(ValueError):
    """An environment variable holds a value joblens cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str = "redis://127.0.0.1:6379/0"
    elasticsearch_urls: tuple[str, ...] = ("http://127.0.0.1:9200",)
    index_prefix: str = "joblogs"
    index_templates_dir: str = DEFAULT_INDEX_TEMPLATES_DIR
    index_shards: int = 1
    index_replicas: int = 0
    index_refresh_interval_s: float = 0.25
    connect_timeout_s: float = 30.0
    es_request_timeout_s: float = 10.0
    rate_limit_per_s: int = 1000
    max_body_bytes: int = 5 * 1024 * 1024
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    max_log_lines: int = 1000
    log_lease_s: float = 30.0
    log_cleanup_grace_s: float = 300.0
    idempotency_ttl_s: int = 24 * 3600
    timeout_loop_interval_s: float = 0.5
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 5
    callback_backoff_s: float = 1.0
    background_tasks: bool = True
    read_cache_entries: int = 10_000
    access_log: bool = True

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
        durations_s = (
            "connect_timeout_s",
            "es_request_timeout_s",
            "body_timeout_s",
            "idle_timeout_s",
            "timeout_loop_interval_s",
            "callback_timeout_s",
            "callback_backoff_s",
        )
        # Comparisons are False for NaN, so a range check also refuses "nan" (and "inf" lies above every bound).
        checks: list[tuple[bool, str, str]] = [
            (1 <= self.port <= 65535, "port", "an integer between 1 and 65535"),
            (self.rate_limit_per_s >= 1, "rate_limit_per_s", "an integer >= 1"),
            (self.max_log_lines >= 1, "max_log_lines", "an integer >= 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes", "an integer >= 1024"),
            # Leases are kept in whole milliseconds (Redis PX): below 1 ms they would be 0, which Redis refuses.
            (0.001 <= self.log_lease_s <= 60, "log_lease_s", "a number of seconds in [0.001, 60]"),
            (
                # An append waits for a refresh and must finish well inside its lease (0.6 of it), so a slower
                # refresh fails every append. ES takes the interval in whole milliseconds; 0 would turn it off.
                0.001 <= self.index_refresh_interval_s <= self.log_lease_s / 2,
                "index_refresh_interval_s",
                "a number of seconds from 0.001 to half of JOBLENS_LOG_LEASE_S",
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
            (self.index_replicas >= 0, "index_replicas", "an integer >= 0"),
            (self.callback_max_attempts >= 1, "callback_max_attempts", "an integer >= 1"),
            (self.read_cache_entries >= 0, "read_cache_entries", "an integer >= 0 (0 turns the cache off)"),
            (
                INDEX_PREFIX_PATTERN.fullmatch(self.index_prefix) is not None,
                "index_prefix",
                f"lower-case letters, digits and '-', not starting with '-', at most {MAX_INDEX_PREFIX_CHARS}"
                " characters (log indices are named <prefix>-YYYY.MM)",
            ),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise SettingsError(f"{_env_name(name)} must be {allowed}, got {getattr(self, name)!r}")


def _env_name(field_name: str) -> str:
    if field_name == "elasticsearch_urls":
        return "JOBLENS_ELASTICSEARCH_URL"
    return "JOBLENS_" + field_name.upper()


def _typed(convert: Callable[[str], T], allowed: str) -> Callable[[str, str], T]:
    def parse(var: str, raw: str) -> T:
        try:
            return convert(raw.strip())
        except ValueError:
            raise SettingsError(f"{var} must be {allowed}, got {raw!r}") from None

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if not raw.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(raw)
        return raw

    return convert


def _url_list(raw: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not urls:
        raise ValueError(raw)
    return tuple(_url(("http", "https"))(u) for u in urls)


_INT = _typed(int, "an integer")
_FLOAT = _typed(float, "a number")
_STR = _typed(str, "a string")

_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "host": _STR,
    "port": _INT,
    "redis_url": _typed(_url(("redis", "rediss", "unix")), "a redis:// URL"),
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
}
