"""The records the API answers with, as typed dataclasses.

Each keeps the object it was read from in ``raw`` (the API's own field names and values), so a program can pass
it on unchanged — ``joblens logs -o json`` prints exactly that. Times are the API's ISO-8601 UTC strings
(``2025-02-24T10:30:00.000Z``); they sort as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "dead", "killed"})


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    job_id: str
    type: str
    data: Any
    created_at: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(raw["id"], raw["jobId"], raw["type"], raw.get("data"), raw["createdAt"])


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    space_id: str
    name: str
    status: str
    payload: Any
    max_retries: int
    attempt_number: int
    timeout_seconds: int
    created_at: str
    updated_at: str
    delivered_at: str | None
    started_at: str | None
    completed_at: str | None
    result: Any
    # Get Job only (None in listings and lifecycle answers)
    callback_url: str | None = None
    callback_headers: dict[str, str] | None = None
    events: list[Event] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Job:
        events = raw.get("events")
        return cls(
            id=raw["id"],
            space_id=raw["spaceId"],
            name=raw["name"],
            status=raw["status"],
            payload=raw.get("payload"),
            max_retries=raw["maxRetries"],
            attempt_number=raw["attemptNumber"],
            timeout_seconds=raw["timeoutSeconds"],
            created_at=raw["createdAt"],
            updated_at=raw["updatedAt"],
            delivered_at=raw.get("deliveredAt"),
            started_at=raw.get("startedAt"),
            completed_at=raw.get("completedAt"),
            result=raw.get("result"),
            callback_url=raw.get("callbackUrl"),
            callback_headers=raw.get("callbackHeaders"),
            events=None if events is None else [Event.from_json(event) for event in events],
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class StageProgress:
    percent: float
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's latest progress report; ``percent``, ``message`` and ``timestamp`` are None before the first."""

    job_id: str
    percent: float | None
    message: str | None
    stages: dict[str, StageProgress]  # the report's subProgress, in its order
    timestamp: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def reported(self) -> bool:
        return self.timestamp is not None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Progress:
        progress = raw.get("progress") or {}
        stages = {
            name: StageProgress(stage["percent"], stage.get("message"))
            for name, stage in (progress.get("subProgress") or {}).items()
        }
        return cls(raw["jobId"], progress.get("percent"), progress.get("message"), stages, raw.get("timestamp"), raw)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line. ``highlights``: where the query matched in ``message`` (code-point offsets, end exclusive),
    when asked for. ``job_id`` and ``job_name`` are set on the lines a space search finds."""

    id: str
    seq: int
    level: str
    message: str
    source: str | None
    metadata: dict[str, Any] | None
    logged_at: str
    created_at: str
    highlights: tuple[tuple[int, int], ...] | None = None
    job_id: str | None = None
    job_name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LogLine:
        highlights = raw.get("highlights")
        return cls(
            id=raw["id"],
            seq=raw["seq"],
            level=raw["level"],
            message=raw["message"],
            source=raw.get("source"),
            metadata=raw.get("metadata"),
            logged_at=raw["loggedAt"],
            created_at=raw["createdAt"],
            highlights=None if highlights is None else tuple((int(a), int(b)) for a, b in highlights),
            job_id=raw.get("jobId"),
            job_name=raw.get("jobName"),
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of a job's log sits. ``has_more``: more matching lines beyond it in the mode's direction
    (after: newer; before and latest: older); ``has_older``/``has_newer``: both sides, in ``around`` mode."""

    mode: str
    oldest_seq: int | None
    newest_seq: int | None
    has_more: bool
    has_older: bool | None = None
    has_newer: bool | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Cursor:
        return cls(
            raw["mode"],
            raw.get("oldestSeq"),
            raw.get("newestSeq"),
            bool(raw.get("hasMore")),
            raw.get("hasOlder"),
            raw.get("hasNewer"),
        )


@dataclass(frozen=True, slots=True)
class LogPage:
    lines: list[LogLine]  # ascending seq, in every mode
    cursor: Cursor

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LogPage:
        return cls([LogLine.from_json(line) for line in raw["logs"]], Cursor.from_json(raw["cursor"]))


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of a space search: newest first; ``next`` is the opaque cursor of the next page (None at the end)."""

    lines: list[LogLine]
    next: str | None
    has_more: bool

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SearchPage:
        cursor = raw.get("cursor") or {}
        return cls([LogLine.from_json(line) for line in raw["logs"]], cursor.get("next"), bool(cursor.get("hasMore")))


@dataclass(frozen=True, slots=True)
class Appended:
    """The answer to a log append: every line is durable, with seqs ``first_seq``..``last_seq``."""

    accepted: int
    first_seq: int
    last_seq: int

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Appended:
        return cls(raw["accepted"], raw["firstSeq"], raw["lastSeq"])


# What following a job's log yields besides its lines (`AsyncJoblens.follow`).
@dataclass(frozen=True, slots=True)
class StatusChanged:
    status: str


@dataclass(frozen=True, slots=True)
class ProgressChanged:
    progress: Progress


@dataclass(frozen=True, slots=True)
class Ended:
    """The job ended and its log is complete: every line up to ``last_seq`` was delivered."""

    status: str
    last_seq: int


FollowItem = LogLine | StatusChanged | ProgressChanged | Ended


@dataclass(frozen=True, slots=True)
class NewLogLine:
    """A line to append. ``logged_at``: when it happened (an aware datetime or an ISO string; default: when the
    server receives it)."""

    message: str
    level: str = "info"
    source: str | None = None
    metadata: dict[str, Any] | None = None
    logged_at: str | datetime | None = None

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"message": self.message, "level": self.level}
        if self.source is not None:
            line["source"] = self.source
        if self.metadata is not None:
            line["metadata"] = self.metadata
        if self.logged_at is not None:
            line["loggedAt"] = iso_time(self.logged_at)
        return line


def iso_time(value: str | datetime) -> str:
    """The API's time format (ISO-8601 UTC, milliseconds, ``Z``) of an aware datetime; a string passes as is."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a time sent to joblens needs a zone (use datetime.now(timezone.utc))")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
