"""Jobs: the stored record (`Job`, a flat Redis hash of strings), the status rules, and the public JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from service.domain.clock import iso_from_ms

JobStatus = Literal["scheduled", "pending", "delivered", "running", "completed", "dead", "killed"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "dead", "killed"})
NON_TERMINAL_STATUSES: frozenset[str] = frozenset(JOB_STATUSES) - TERMINAL_STATUSES
# A worker holds the job: an ack deadline (delivered) or an execution deadline (running) runs.
HELD_STATUSES: frozenset[str] = frozenset({"delivered", "running"})


def describe_statuses(statuses: frozenset[str]) -> str:
    """``"pending"``, ``"delivered or running"``, ``"non-terminal"``: how a 409 names the states an action needs."""
    if statuses == NON_TERMINAL_STATUSES:
        return "non-terminal"
    return " or ".join(status for status in JOB_STATUSES if status in statuses)


def lua_set(name: str, members: Iterable[str]) -> str:
    """A Lua table used as a set, so that scripts test statuses against the same definitions as Python."""
    return f"local {name} = {{{', '.join(f'{member}=true' for member in sorted(members))}}}\n"


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job to create."""

    name: str
    payload_json: bytes
    max_retries: int
    timeout_s: int
    scheduled_for_ms: int | None
    callback_url: str | None
    callback_headers_json: bytes | None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored in its Redis hash (see `stores.redis_jobs`); times in ms since the epoch, JSON kept as text.

    The hash's field names (the second column of `_FIELDS`) are also what the Lua scripts read and write.
    """

    id: str
    space_id: str
    name: str
    payload_json: str
    status: str
    max_retries: int
    attempt_number: int
    timeout_s: int
    created_ms: int
    updated_ms: int
    delivered_ms: int | None = None
    started_ms: int | None = None
    completed_ms: int | None = None
    result_json: str | None = None
    callback_url: str | None = None
    callback_headers_json: str | None = None
    scheduled_for_ms: int | None = None

    @classmethod
    def created(cls, job_id: str, space_id: str, new: NewJob, created_ms: int) -> Job:
        return cls(
            id=job_id,
            space_id=space_id,
            name=new.name,
            payload_json=new.payload_json.decode(),
            status="scheduled" if new.scheduled_for_ms is not None else "pending",
            max_retries=new.max_retries,
            attempt_number=0,
            timeout_s=new.timeout_s,
            created_ms=created_ms,
            updated_ms=created_ms,
            callback_url=new.callback_url,
            callback_headers_json=new.callback_headers_json.decode() if new.callback_headers_json else None,
            scheduled_for_ms=new.scheduled_for_ms,
        )

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> Job:
        """From HGETALL's reply (the clients here do not decode responses)."""
        values: dict[str, Any] = {}
        for attribute, field, kind in _FIELDS:
            value = raw.get(field.encode())
            values[attribute] = _DECODE[kind](value.decode() if value is not None else "")
        return cls(**values)

    @classmethod
    def from_flat(cls, flat: Sequence[bytes]) -> Job:
        """From a hash returned inside a Lua reply: a flat field, value, field, value… array."""
        return cls.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))

    def to_hash(self) -> dict[str, str]:
        """Every field as a string; absent values are stored as ''."""
        return {field: _ENCODE[kind](getattr(self, attribute)) for attribute, field, kind in _FIELDS}

    @property
    def ended_ms(self) -> int:
        """When the job reached its terminal status (or last changed, for a job that has not ended)."""
        return self.completed_ms or self.updated_ms

    def view(self, *, detailed: bool = False) -> dict[str, Any]:
        """The job's public JSON; ``detailed`` adds the callback fields (Get Job)."""
        view: dict[str, Any] = {
            "id": self.id,
            "spaceId": self.space_id,
            "name": self.name,
            "payload": _json(self.payload_json),
            "status": self.status,
            "maxRetries": self.max_retries,
            "attemptNumber": self.attempt_number,
            "timeoutSeconds": self.timeout_s,
        }
        if detailed:
            view["callbackUrl"] = self.callback_url
            view["callbackHeaders"] = _json(self.callback_headers_json)
        view["deliveredAt"] = _time(self.delivered_ms)
        view["startedAt"] = _time(self.started_ms)
        view["completedAt"] = _time(self.completed_ms)
        view["result"] = _json(self.result_json)
        view["createdAt"] = iso_from_ms(self.created_ms)
        view["updatedAt"] = iso_from_ms(self.updated_ms)
        return view


_Kind = Literal["str", "int", "optional_int", "optional_str"]
# attribute, hash field, how it is stored
_FIELDS: tuple[tuple[str, str, _Kind], ...] = (
    ("id", "id", "str"),
    ("space_id", "spaceId", "str"),
    ("name", "name", "str"),
    ("payload_json", "payload", "str"),
    ("status", "status", "str"),
    ("max_retries", "maxRetries", "int"),
    ("attempt_number", "attemptNumber", "int"),
    ("timeout_s", "timeoutSeconds", "int"),
    ("delivered_ms", "deliveredAt", "optional_int"),
    ("started_ms", "startedAt", "optional_int"),
    ("completed_ms", "completedAt", "optional_int"),
    ("result_json", "result", "optional_str"),
    ("created_ms", "createdAt", "int"),
    ("updated_ms", "updatedAt", "int"),
    ("callback_url", "callbackUrl", "optional_str"),
    ("callback_headers_json", "callbackHeaders", "optional_str"),
    ("scheduled_for_ms", "scheduledFor", "optional_int"),
)
JOB_HASH_FIELDS = frozenset(field for _, field, _ in _FIELDS)
_DECODE: dict[_Kind, Any] = {
    "str": str,
    "int": int,
    "optional_int": lambda raw: int(raw) if raw else None,
    "optional_str": lambda raw: raw or None,
}
_ENCODE: dict[_Kind, Any] = {
    "str": str,
    "int": str,
    "optional_int": lambda value: "" if value is None else str(value),
    "optional_str": lambda value: value or "",
}


def _time(ms: int | None) -> str | None:
    return iso_from_ms(ms) if ms is not None else None


def _json(raw: str | None) -> Any:
    # Stored JSON is emitted as-is: no parse and re-dump on the read path.
    return orjson.Fragment(raw) if raw else None


def event_record(event_id: str, job_id: str, space_id: str, kind: str, data: Any, created_ms: int) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "jobId": job_id,
            "spaceId": space_id,
            "type": kind,
            "data": data,
            "createdAt": iso_from_ms(created_ms),
        }
    )
