"""Validation of the worker calls' bodies (poll, complete, fail, kill, event, checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain.errors import InvalidParam
from service.domain.validation import encode_json, parse_json

MAX_POLL_COUNT = 50
MAX_EVENT_TYPE_CHARS = 100
MAX_RESULT_BYTES = 1024 * 1024
NAME_ALIASES = ("names", "name", "types", "type")
RESERVED_EVENT_TYPES = frozenset(
    {
        "created",
        "scheduled",
        "delivered",
        "started",
        "checkpoint",
        "retried",
        "timeout",
        "completed",
        "dead",
        "killed",
        "callback_sent",
        "callback_failed",
    }
)


@dataclass(frozen=True, slots=True)
class PollRequest:
    count: int
    names: tuple[str, ...]


def _object_body(body: bytes, allowed: frozenset[str], *, required: bool = False) -> dict[str, Any]:
    if not body.strip() and not required:
        return {}
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidParam("body must be a JSON object")
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InvalidParam(f"{unknown[0]} is not accepted here; allowed: {', '.join(sorted(allowed)) or 'nothing'}")
    return document


def parse_poll(body: bytes) -> PollRequest:
    document = _object_body(body, frozenset({"count", *NAME_ALIASES}))
    count = document.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_POLL_COUNT:
        raise InvalidParam(f"count must be an integer between 1 and {MAX_POLL_COUNT}")
    names: dict[str, None] = {}
    for alias in NAME_ALIASES:
        value = document.get(alias)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or len(values) > 100:
            raise InvalidParam(f"{alias} must be a job name or a non-empty array of at most 100 job names")
        for name in values:
            if not isinstance(name, str) or not 1 <= len(name) <= 200:
                raise InvalidParam(f"{alias} must hold job names: strings of 1 to 200 characters")
            names[name] = None
    return PollRequest(count, tuple(names))


def _bounded_json(value: Any, name: str, enclosing: int = 3) -> bytes:
    """``value`` as JSON, within size; ``enclosing``: how deep it sits in an answer (an event's data in Get Job
    is three levels down: {"events": [{"data": …}]})."""
    encoded = encode_json(value, name, enclosing=enclosing)
    if len(encoded) > MAX_RESULT_BYTES:
        raise InvalidParam(f"{name} must be at most {MAX_RESULT_BYTES} bytes as JSON")
    return encoded


def parse_complete(body: bytes) -> bytes:
    """The result as JSON (``null`` when none was given)."""
    return _bounded_json(_object_body(body, frozenset({"result"})).get("result"), "result")


def parse_fail(body: bytes) -> bytes:
    """The error as JSON: a non-empty string or an object."""
    error = _object_body(body, frozenset({"error"}), required=True).get("error")
    if not (isinstance(error, str) and error.strip()) and not (isinstance(error, dict) and error):
        raise InvalidParam("error is required: a non-empty string or a non-empty object")
    return _bounded_json(error, "error", enclosing=4)  # {"events": [{"data": {"error": …}}]}


def parse_kill(body: bytes) -> str | None:
    """The reason, if one was given."""
    reason = _object_body(body, frozenset({"reason"})).get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 10_000):
        raise InvalidParam("reason must be a string of at most 10000 characters")
    return reason


def parse_event(body: bytes) -> tuple[str, bytes]:
    """The event type, and its data as JSON."""
    document = _object_body(body, frozenset({"type", "data"}), required=True)
    kind = document.get("type")
    if not isinstance(kind, str) or not 1 <= len(kind) <= MAX_EVENT_TYPE_CHARS or not kind.strip():
        raise InvalidParam(f"type is required: a string of 1 to {MAX_EVENT_TYPE_CHARS} characters")
    if kind.strip().lower() in RESERVED_EVENT_TYPES:
        raise InvalidParam(f"type {kind!r} is reserved for lifecycle events; choose another type")
    return kind, _bounded_json(document.get("data"), "data")


def parse_checkpoint(body: bytes) -> bytes:
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidParam("body must be a JSON object (the checkpoint data)")
    return _bounded_json(document, "checkpoint")
