"""Time and identifiers: epoch milliseconds inside, ISO-8601 UTC with milliseconds on the wire."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

ULID_PATTERN = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TEN_BIT_PAIRS = tuple(a + b for a in CROCKFORD_BASE32 for b in CROCKFORD_BASE32)  # 10 bits → two characters
_PAIR_SHIFTS = tuple(range(120, -1, -10))
_HIGH_SHIFTS = tuple(range(90, -1, -10))  # of a value shifted right by the last three pairs' 30 bits
RANDOMNESS_MAX = (1 << 80) - 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_last_ms = 0
_last_randomness = 0


def new_id() -> str:
    """A new ULID for now, monotonic within this process: ids minted in the same millisecond (several jobs of
    one request) count up from the first one's random part, so they sort in the order they were made."""
    global _last_ms, _last_randomness
    epoch_ms = now_ms()
    if epoch_ms <= _last_ms and _last_randomness < RANDOMNESS_MAX:
        epoch_ms, randomness = _last_ms, _last_randomness + 1
    else:
        randomness = int.from_bytes(os.urandom(10))
    _last_ms, _last_randomness = epoch_ms, randomness
    return ulid_of(epoch_ms, randomness)


def new_ids(count: int) -> list[str]:
    """``count`` new ULIDs, the same as ``count`` calls of `new_id` in one millisecond would make (one per log line
    of an append), made together."""
    global _last_ms, _last_randomness
    epoch_ms = now_ms()
    if epoch_ms <= _last_ms and _last_randomness + count <= RANDOMNESS_MAX:
        epoch_ms, randomness = _last_ms, _last_randomness + 1
    else:
        randomness = int.from_bytes(os.urandom(10)) >> 1  # room to count up from it
    _last_ms, _last_randomness = epoch_ms, randomness + count - 1
    return ulids_of(epoch_ms, randomness, count)


_LOW_BITS = 30  # the last three characters' pairs


def ulids_of(epoch_ms: int, randomness: int, count: int) -> list[str]:
    """``ulid_of(epoch_ms, randomness + i)`` for i in ``range(count)``: consecutive ids share their first 20
    characters until a carry reaches them, so only the last six are encoded per id."""
    first = (epoch_ms << 80) | randomness
    ids: list[str] = []
    prefix, prefix_of = "", -1
    for value in range(first, first + count):
        high, low = value >> _LOW_BITS, value & ((1 << _LOW_BITS) - 1)
        if high != prefix_of:
            prefix, prefix_of = "".join([_TEN_BIT_PAIRS[(high >> shift) & 1023] for shift in _HIGH_SHIFTS]), high
        ids.append(prefix + _TEN_BIT_PAIRS[low >> 20] + _TEN_BIT_PAIRS[(low >> 10) & 1023] + _TEN_BIT_PAIRS[low & 1023])
    return ids


def ulid_of(epoch_ms: int, randomness: int) -> str:
    """The ULID of ``epoch_ms`` (48 bits) and ``randomness`` (80 bits): 26 Crockford base32 characters.

    Ids are minted per log line and per request: encoding ten bits per table lookup costs half of what
    a character-by-character encoder (python-ulid's) does."""
    value = (epoch_ms << 80) | randomness
    return "".join([_TEN_BIT_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def is_ulid(text: str) -> bool:
    return ULID_PATTERN.fullmatch(text) is not None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def _ms_since_epoch(moment: datetime) -> int:
    """Exact, in integers: ``timestamp() * 1000`` is a float, and truncating it loses a millisecond for many
    times (2038-06-15T12:34:56.002Z became .001Z). Sub-millisecond digits are dropped (floor), in any year."""
    return (moment - EPOCH) // ONE_MS


# Wire times are years 0001-9999 in UTC (what ISO-8601 with four-digit years and Elasticsearch dates can hold).
MIN_MS = _ms_since_epoch(datetime(1, 1, 1, tzinfo=UTC))
MAX_MS = _ms_since_epoch(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))


_formatted_second = (0, "1970-01-01T00:00:00")


def iso_from_ms(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``; the year is always four digits (strftime does not pad years < 1000).
    The last second formatted is remembered: times of one second (log lines, access logs) cost a quarter."""
    global _formatted_second
    second, millis = divmod(epoch_ms, 1000)
    if second != _formatted_second[0]:
        m = datetime.fromtimestamp(second, tz=UTC)
        _formatted_second = (
            second,
            f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}",
        )
    return f"{_formatted_second[1]}.{millis:03d}Z"


def ms_from_iso(text: str) -> int:
    """Parse an ISO-8601 time with an explicit offset (``Z`` or ``±hh:mm``) that falls in years 0001-9999 UTC;
    ValueError otherwise."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    epoch_ms = _ms_since_epoch(moment)
    if not MIN_MS <= epoch_ms <= MAX_MS:
        raise ValueError(text)
    return epoch_ms
