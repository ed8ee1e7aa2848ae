"""Jobs as the API shows them, built from their stored form (a flat Redis hash of strings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from service.domain.clock import iso_from_ms

JOB_STATUSES = ("scheduled", "pending", "delivered", "running", "completed", "dead", "killed")
TERMINAL_STATUSES = frozenset({"completed", "dead", "killed"})


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


def _time(raw: str) -> str | None:
    return iso_from_ms(int(raw)) if raw else None


def _json(raw: str) -> Any:
    # Stored JSON is emitted as-is: no parse and re-dump on the read path.
    return orjson.Fragment(raw) if raw else None


def job_view(stored: Mapping[str, str], *, detailed: bool = False) -> dict[str, Any]:
    """The job's public JSON; ``detailed`` adds callback fields (Get Job)."""
    view: dict[str, Any] = {
        "id": stored["id"],
        "spaceId": stored["spaceId"],
        "name": stored["name"],
        "payload": _json(stored["payload"]),
        "status": stored["status"],
        "maxRetries": int(stored["maxRetries"]),
        "attemptNumber": int(stored["attemptNumber"]),
        "timeoutSeconds": int(stored["timeoutSeconds"]),
    }
    if detailed:
        view["callbackUrl"] = stored["callbackUrl"] or None
        view["callbackHeaders"] = _json(stored["callbackHeaders"])
    view.update(
        {
            "deliveredAt": _time(stored["deliveredAt"]),
            "startedAt": _time(stored["startedAt"]),
            "completedAt": _time(stored["completedAt"]),
            "result": _json(stored["result"]),
            "createdAt": _time(stored["createdAt"]),
            "updatedAt": _time(stored["updatedAt"]),
        }
    )
    return view


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
