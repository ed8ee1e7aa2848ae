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


# Wire times are years 0001-9999 in UTC (what ISO-8601 with four-digit years and Elasticsearch dates can hold).
MIN_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)


def iso_from_ms(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``; the year is always four digits (strftime does not pad years < 1000)."""
    m = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{epoch_ms % 1000:03d}Z"


def ms_from_iso(text: str) -> int:
    """Parse an ISO-8601 time with an explicit offset (``Z`` or ``±hh:mm``) that falls in years 0001-9999 UTC;
    ValueError otherwise."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    epoch_ms = int(moment.timestamp() * 1000)
    if not MIN_MS <= epoch_ms <= MAX_MS:
        raise ValueError(text)
    return epoch_ms
