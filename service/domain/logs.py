"""Log line validation and log query parameters (pure: no I/O)."""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from multidict import MultiDict

from service.domain.clock import iso_from_ms, ms_from_iso, new_ids
from service.domain.errors import InvalidParam, TooLarge
from service.domain.search import QueryWord, parse_words, search_fields
from service.domain.validation import encode_json, parse_json, query_int, single_query_values

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
LINE_FIELDS = frozenset({"message", "level", "source", "metadata", "loggedAt"})
MAX_MESSAGE_BYTES = 32 * 1024
MAX_SOURCE_CHARS = 256
MAX_QUERY_CHARS = 1024
LOGS_LIMIT_DEFAULT, LOGS_LIMIT_MAX = 200, 500

Mode = Literal["after", "before", "latest", "around"]
EXPORT_FORMATS = ("ndjson", "text")


@dataclass(frozen=True, slots=True)
class LogQuery:
    mode: Mode
    seq: int  # the after/before/around seq; ignored in "latest" mode
    limit: int
    levels: tuple[str, ...]
    text: str | None
    highlight: bool = False

    @property
    def words(self) -> tuple[QueryWord, ...]:
        return parse_words(self.text) if self.text else ()


def parse_log_query(query: Any) -> LogQuery:
    values = single_query_values(query, ("limit", "after", "before", "around", "q", "highlight"))
    if "after" in values and "before" in values:
        raise InvalidParam("Use either after or before, not both")
    if "around" in values:
        conflicts = [name for name in ("after", "before", "q") if name in values]
        if conflicts:
            raise InvalidParam(f"around cannot be combined with {' or '.join(conflicts)}")
    limit = query_int(values, "limit", default=LOGS_LIMIT_DEFAULT, minimum=1)
    after = query_int(values, "after", default=None, minimum=0)
    before = query_int(values, "before", default=None, minimum=0)
    around = query_int(values, "around", default=None, minimum=1)
    assert limit is not None
    bound = next((seq for seq in (after, before, around) if seq is not None), None)
    mode: Mode = "after" if after is not None else "before" if before is not None else "around" if around else "latest"
    return LogQuery(
        mode=mode,
        seq=bound or 0,
        limit=min(limit, LOGS_LIMIT_MAX),
        levels=_levels(query.getall("level", [])),
        text=parse_text(values.get("q")),
        highlight=parse_flag(values, "highlight"),
    )


def parse_text(text: str | None) -> str | None:
    """``q`` as a filter, or None for no filter."""
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise InvalidParam(f"q must be at most {MAX_QUERY_CHARS} characters, got {len(text)}")
    # Only words are searchable: a query without any letter or digit (say "*") filters nothing.
    return text if text and any(ch.isalnum() for ch in text) else None


def parse_flag(values: dict[str, str], name: str) -> bool:
    value = values.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidParam(f"{name} must be true or false, got {value[:20]!r}")
    return value in ("true", "1")


@dataclass(frozen=True, slots=True)
class ExportQuery:
    format: str  # one of EXPORT_FORMATS
    levels: tuple[str, ...]
    text: str | None

    @property
    def words(self) -> tuple[QueryWord, ...]:
        return parse_words(self.text) if self.text else ()


def parse_export_query(query: Any) -> ExportQuery:
    values = single_query_values(query, ("format", "q"))
    export_format = values.get("format", "ndjson")
    if export_format not in EXPORT_FORMATS:
        raise InvalidParam(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format[:20]!r}")
    return ExportQuery(export_format, _levels(query.getall("level", [])), parse_text(values.get("q")))


STREAM_TAIL_DEFAULT, STREAM_TAIL_MAX = 100, 500


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Where a log stream starts: after ``after_seq`` exactly, or (``after_seq`` None) with the newest ``tail``
    lines. ``query`` holds the filter (levels, text) as Read Logs takes it."""

    after_seq: int | None
    tail: int
    query: LogQuery


def parse_stream_query(query: Any, last_event_id: str | None) -> StreamStart:
    """``after``, ``tail``, ``level`` and ``q`` of a log stream; a ``Last-Event-ID`` (an EventSource reconnecting)
    wins over ``after``. Filters are validated exactly as Read Logs validates them."""
    values = single_query_values(query, ("after", "tail"))
    tail = query_int(values, "tail", default=STREAM_TAIL_DEFAULT, minimum=1)
    assert tail is not None
    if tail > STREAM_TAIL_MAX:
        raise InvalidParam(f"tail must be at most {STREAM_TAIL_MAX}, got {tail}")
    after = query_int(values, "after", default=None, minimum=0)
    if last_event_id is not None and last_event_id.strip():
        after = query_int({"Last-Event-ID": last_event_id.strip()}, "Last-Event-ID", default=None, minimum=0)
    # the filter: Read Logs' own parsing (level, q), in "after" mode from the start point
    filters = MultiDict((name, value) for name, value in query.items() if name in ("level", "q"))
    filters["after"] = str(after or 0)
    filters["limit"] = str(LOGS_LIMIT_MAX)
    return StreamStart(after, tail, parse_log_query(filters))


def _levels(given: list[str]) -> tuple[str, ...]:
    levels: dict[str, None] = {}
    for value in given:
        for part in value.split(","):
            level = part.strip().lower()
            if level not in LEVELS:
                raise InvalidParam(f"level must be one or more of {', '.join(LEVELS)}, got {part[:50]!r}")
            levels[level] = None
    return tuple(levels)


def parse_log_body(body: bytes, content_type: str, max_lines: int) -> list[Any]:
    """The raw line objects of an ingest body: ``{"logs": [...]}``, a bare array, or NDJSON."""
    if content_type == "application/x-ndjson":
        # blank lines are skipped: logs[i] counts lines that hold a value, as field errors do
        # At most one line more than allowed is looked at, and none is parsed before the count is known to be
        # right: 5 MiB of tiny lines would otherwise hold up the event loop.
        valued = ((number, raw) for number, raw in enumerate(body.splitlines()) if raw.strip())
        numbered = list(itertools.islice(valued, max_lines + 1))
        if len(numbered) > max_lines:
            raise TooLarge(f"logs may hold at most {max_lines} lines per request, got more")
        lines = [
            parse_json(raw, f"logs[{index}] (NDJSON line {number + 1})") for index, (number, raw) in enumerate(numbered)
        ]
    else:
        document = parse_json(body)
        if isinstance(document, dict) and set(document) == {"logs"}:
            document = document["logs"]
        if not isinstance(document, list):
            raise InvalidParam('body must be {"logs": [...]}, an array of log lines, or NDJSON')
        lines = document
    if not lines:
        raise InvalidParam("logs must hold at least one line")
    if len(lines) > max_lines:
        raise TooLarge(f"logs may hold at most {max_lines} lines per request, got {len(lines)}")
    return lines


def in_ranges(seq: int, ranges: Iterable[tuple[int, int]]) -> bool:
    """Whether ``seq`` lies in one of the (first, last) seq ranges (abandoned ranges, say)."""
    return any(first <= seq <= last for first, last in ranges)


def build_docs(lines: list[Any], job_id: str, space_id: str, received_ms: int) -> list[dict[str, Any]]:
    """Validate every line (nothing is stored if one is bad) and build the Elasticsearch documents."""
    received = iso_from_ms(received_ms)
    ids = new_ids(len(lines))
    return [_doc(line, index, ids[index], job_id, space_id, received) for index, line in enumerate(lines)]


def _utf8_bytes_over(text: str, limit: int) -> bool:
    # A character takes 1 to 4 bytes: most messages are decided without encoding them.
    if len(text) * 4 <= limit:
        return False
    return len(text) > limit or len(text.encode()) > limit


def _doc(line: Any, index: int, line_id: str, job_id: str, space_id: str, received: str) -> dict[str, Any]:
    # Error messages name the line (``logs[i]``); that text is built only when a line is refused.
    if not isinstance(line, dict):
        raise InvalidParam(f"logs[{index}] must be an object with a message")
    if not LINE_FIELDS.issuperset(line):
        unknown = sorted(set(line) - LINE_FIELDS)[0]
        allowed = ", ".join(sorted(LINE_FIELDS))
        raise InvalidParam(f"logs[{index}].{unknown} is not a log line field; allowed: {allowed}")
    message = line.get("message")
    if not isinstance(message, str) or _utf8_bytes_over(message, MAX_MESSAGE_BYTES):
        raise InvalidParam(f"logs[{index}].message is required: a string of at most {MAX_MESSAGE_BYTES} bytes")
    level = line.get("level", "info")
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise InvalidParam(f"logs[{index}].level must be one of {', '.join(LEVELS)}")
    source = line.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS):
        raise InvalidParam(f"logs[{index}].source must be a string of at most {MAX_SOURCE_CHARS} characters")
    metadata = line.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidParam(f"logs[{index}].metadata must be an object")
    # as JSON already: written into the bulk request as is, and known to fit in a read's {"logs": [{…}]}
    metadata_json = (
        None if metadata is None else orjson.Fragment(encode_json(metadata, f"logs[{index}].metadata", enclosing=3))
    )
    logged_at = line.get("loggedAt")
    if logged_at is None:
        logged = received
    else:
        try:
            logged = iso_from_ms(ms_from_iso(logged_at))
        except (ValueError, TypeError, OverflowError, OSError):
            raise InvalidParam(
                f"logs[{index}].loggedAt must be an ISO-8601 time with a zone in years 0001-9999"
            ) from None
    fields = search_fields(message)
    return {
        "id": line_id,
        "job_id": job_id,
        "space_id": space_id,
        "level": level.lower(),
        "message": message,
        "words": fields.words,
        "joins": fields.joins,
        "source": source,
        "metadata": metadata_json,
        "logged_at": logged,
        "created_at": received,
    }


def ingest_answer(accepted: int, first_seq: int, last_seq: int) -> bytes:
    return orjson.dumps({"accepted": accepted, "firstSeq": first_seq, "lastSeq": last_seq})


def parse_idempotency_key(header: str | None) -> str | None:
    if header is not None and not (1 <= len(header) <= 255 and header.isascii() and header.isprintable()):
        raise InvalidParam("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return header


def export_chunk(lines: list[dict[str, Any]], export_format: str) -> bytes:
    """Lines of an export as NDJSON (the line objects of Read Logs) or as text: time, level, message."""
    if export_format == "ndjson":
        return b"".join(orjson.dumps(line) + b"\n" for line in lines)
    return "".join(f"{line['loggedAt']} {line['level'].upper():<5} {line['message']}\n" for line in lines).encode()


SPACE_LIMIT_DEFAULT, SPACE_LIMIT_MAX = 50, 200
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SpaceLogQuery:
    """A search across the jobs of a space: newest first, within ``since_ms…until_ms`` (line reception times),
    continuing after ``position`` (the sort values of the last line looked at) when paging on."""

    since_ms: int
    until_ms: int
    levels: tuple[str, ...]
    text: str | None
    job_name: str | None
    limit: int
    highlight: bool
    position: tuple[int, str, int] | None  # (createdAt ms, job id, seq)

    @property
    def words(self) -> tuple[QueryWord, ...]:
        return parse_words(self.text) if self.text else ()

    def cursor_after(self, position: tuple[int, str, int]) -> str:
        """The opaque cursor that continues after ``position`` with this same window: stable while lines
        arrive, since every later line is newer than the window's end."""
        state = [self.since_ms, self.until_ms, *position]
        return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def parse_space_log_query(query: Any, now: int, default_days: int, max_days: int) -> SpaceLogQuery:
    values = single_query_values(query, ("q", "name", "since", "until", "limit", "cursor", "highlight"))
    limit = query_int(values, "limit", default=SPACE_LIMIT_DEFAULT, minimum=1)
    assert limit is not None
    if "cursor" in values:
        since_ms, until_ms, position = _parse_cursor(values["cursor"])
    else:
        until_ms = _time_param(values, "until", now)
        since_ms = _time_param(values, "since", until_ms - default_days * DAY_MS)
        position = None
    if since_ms > until_ms:
        raise InvalidParam("since must not be later than until")
    if until_ms - since_ms > max_days * DAY_MS:
        raise InvalidParam(f"since…until may span at most {max_days} days; narrow the window")
    name = values.get("name")
    return SpaceLogQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        levels=_levels(query.getall("level", [])),
        text=parse_text(values.get("q")),
        job_name=name if name else None,
        limit=min(limit, SPACE_LIMIT_MAX),
        highlight=parse_flag(values, "highlight"),
        position=position,
    )


def _time_param(values: dict[str, str], name: str, default: int) -> int:
    if name not in values:
        return default
    try:
        return ms_from_iso(values[name])
    except (ValueError, TypeError, OverflowError, OSError):
        raise InvalidParam(f"{name} must be an ISO-8601 time with a zone, got {values[name][:40]!r}") from None


def _parse_cursor(cursor: str) -> tuple[int, int, tuple[int, str, int]]:
    try:
        since_ms, until_ms, created_ms, job_id, seq = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        if not all(isinstance(value, int) for value in (since_ms, until_ms, created_ms, seq)) or not isinstance(
            job_id, str
        ):
            raise ValueError("cursor fields")
    except (ValueError, TypeError, binascii.Error):
        raise InvalidParam("cursor is not one this API gave out") from None
    return since_ms, until_ms, (created_ms, job_id, seq)
