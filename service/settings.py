"""Runtime configuration: every knob is a ``JOBLENS_*`` environment variable, read once into `Settings`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# In a source checkout (and an editable install) the templates sit beside the package.
DEFAULT_INDEX_TEMPLATES_DIR = str(Path(__file__).resolve().parents[1] / "index_templates")


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
        checks: list[tuple[bool, str, str]] = [
            (1 <= self.port <= 65535, "port", "an integer between 1 and 65535"),
            (self.rate_limit_per_s >= 1, "rate_limit_per_s", "an integer >= 1"),
            (self.max_log_lines >= 1, "max_log_lines", "an integer >= 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes", "an integer >= 1024"),
            (0 < self.log_lease_s <= 60, "log_lease_s", "a number of seconds in (0, 60]"),
            (self.index_shards >= 1, "index_shards", "an integer >= 1"),
            (self.index_replicas >= 0, "index_replicas", "an integer >= 0"),
            (self.callback_max_attempts >= 1, "callback_max_attempts", "an integer >= 1"),
            (self.read_cache_entries >= 0, "read_cache_entries", "an integer >= 0 (0 turns the cache off)"),
            (
                self.index_prefix.islower() and self.index_prefix.replace("-", "").isalnum(),
                "index_prefix",
                "lower-case letters, digits and '-'",
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
    "idempotency_ttl_s": _INT,
    "timeout_loop_interval_s": _FLOAT,
    "callback_timeout_s": _FLOAT,
    "callback_max_attempts": _INT,
    "callback_backoff_s": _FLOAT,
    "background_tasks": _typed(_bool, "true or false"),
    "read_cache_entries": _INT,
    "access_log": _typed(_bool, "true or false"),
}
