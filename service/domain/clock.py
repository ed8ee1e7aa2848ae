"""Time and identifiers: epoch milliseconds inside, ISO-8601 UTC with milliseconds on the wire."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from ulid import ULID

ULID_PATTERN = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return str(ULID())


def is_ulid(text: str) -> bool:
    return ULID_PATTERN.fullmatch(text) is not None


def iso_from_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def ms_from_iso(text: str) -> int:
    """Parse an ISO-8601 time with an explicit offset (``Z`` or ``±hh:mm``); ValueError otherwise."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    return int(moment.timestamp() * 1000)
