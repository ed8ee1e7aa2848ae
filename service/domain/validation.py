"""Request validation: turns raw query parameters and JSON bodies into typed values or `InvalidParam`.

Every message names the parameter (or body field) and what is allowed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from yarl import URL

from service.domain.clock import ms_from_iso, now_ms
from service.domain.errors import InvalidParam, TooLarge
from service.domain.jobs import JOB_STATUSES, NewJob

MAX_JOBS_PER_REQUEST = 1000
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_NAME_CHARS = 200
MAX_CALLBACK_URL_CHARS = 2048
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 100
MAX_JSON_DEPTH = 254  # what orjson can write back

MAX_CALLBACK_HEADERS = 50
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # an RFC 9110 token
# no control characters (C0, DEL, C1, line and paragraph separators): nothing that could split a header
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\xa0-\u2027\u202a-\U0010ffff]{0,8192}")
URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")  # what yarl would quietly rewrite or drop
HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?|[A-Za-z0-9_]{1,63}")
# Headers that describe the request's own framing or target: joblens sets them, a job must not.
FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "content-type",
        "transfer-encoding",
        "content-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
    }
)

JOB_FIELDS = frozenset(
    {"name", "payload", "maxRetries", "timeoutSeconds", "scheduledFor", "callbackUrl", "callbackHeaders"}
)


QUERY_INT_CEILING = 10**18  # larger numbers mean "as far as it goes": limits clamp, offsets and seqs run past the end


def query_int(query: Mapping[str, str], name: str, *, default: int | None, minimum: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise InvalidParam(f"{name} must be an integer >= {minimum}, got {raw[:50]!r}")
    value = int(raw) if len(raw) <= 18 else QUERY_INT_CEILING
    if value < minimum:
        raise InvalidParam(f"{name} must be an integer >= {minimum}, got {raw[:50]!r}")
    return value


def single_query_values(query: Any, names: Sequence[str]) -> dict[str, str]:
    """Reject a parameter given twice (``limit=1&limit=2``) instead of picking one silently."""
    values: dict[str, str] = {}
    for name in names:
        given = query.getall(name, [])
        if len(given) > 1:
            raise InvalidParam(f"{name} must be given at most once")
        if given:
            values[name] = given[0]
    return values


@dataclass(frozen=True, slots=True)
class ListJobsParams:
    status: str | None
    limit: int
    offset: int


def parse_list_jobs(query: Any) -> ListJobsParams:
    values = single_query_values(query, ("status", "limit", "offset"))
    status = values.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidParam(f"status must be one of {', '.join(JOB_STATUSES)}, got {status[:50]!r}")
    limit = query_int(values, "limit", default=LIST_LIMIT_DEFAULT, minimum=1)
    offset = query_int(values, "offset", default=0, minimum=0)
    assert limit is not None and offset is not None
    return ListJobsParams(status, min(limit, LIST_LIMIT_MAX), offset)


def encode_json(value: Any, what: str, *, enclosing: int) -> bytes:
    """``value`` (parsed from a request) as JSON again. orjson reads deeper nesting than it writes: refuse what
    could not be written back inside the ``enclosing`` levels around it in the deepest answer that shows it."""
    try:
        wrapped = orjson.dumps(functools.reduce(lambda inner, _: [inner], range(enclosing), value))
    except orjson.JSONEncodeError:
        raise InvalidParam(f"{what} is nested too deeply: at most {MAX_JSON_DEPTH - enclosing} levels") from None
    return wrapped[enclosing : len(wrapped) - enclosing]


def parse_json(body: bytes, what: str = "body") -> Any:
    if not body.strip():
        raise InvalidParam(f"{what} must be JSON, got an empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidParam(f"{what} is not valid JSON: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(obj: Mapping[str, Any], name: str, where: str, default: int, low: int, high: int) -> int:
    value = obj.get(name, default)
    if not _is_int(value) or not low <= value <= high:
        raise InvalidParam(f"{where}{name} must be an integer between {low} and {high}")
    return int(value)


def parse_new_jobs(body: bytes) -> tuple[list[NewJob], bool]:
    """Validate a create-jobs body (one object or an array); returns the jobs and whether it was an array."""
    document = parse_json(body)
    if isinstance(document, dict):
        return [parse_new_job(document, "")], False
    if not isinstance(document, list):
        raise InvalidParam("body must be a job object or an array of job objects")
    if not document:
        raise InvalidParam(f"body must hold between 1 and {MAX_JOBS_PER_REQUEST} jobs, got 0")
    if len(document) > MAX_JOBS_PER_REQUEST:
        raise TooLarge(f"body must hold between 1 and {MAX_JOBS_PER_REQUEST} jobs, got {len(document)}")
    return [parse_new_job(item, f"[{i}].") for i, item in enumerate(document)], True


def parse_new_job(obj: Any, where: str) -> NewJob:
    if not isinstance(obj, dict):
        raise InvalidParam(f"{where.rstrip('.') or 'body'} must be a job object")
    unknown = sorted(set(obj) - JOB_FIELDS)
    if unknown:
        raise InvalidParam(f"{where}{unknown[0]} is not a job field; allowed: {', '.join(sorted(JOB_FIELDS))}")
    name = obj.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not name.strip():
        raise InvalidParam(f"{where}name is required: a string of 1 to {MAX_NAME_CHARS} characters")
    payload = obj.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise InvalidParam(f"{where}payload must be a JSON object")
    payload_json = encode_json(payload, f"{where}payload", enclosing=3)  # poll: {"jobs": [{"payload": …}]}
    if len(payload_json) > MAX_PAYLOAD_BYTES:
        raise TooLarge(f"{where}payload must be at most {MAX_PAYLOAD_BYTES} bytes as JSON")
    return NewJob(
        name=name,
        payload_json=payload_json,
        max_retries=_int_field(obj, "maxRetries", where, 3, 0, 25),
        timeout_s=_int_field(obj, "timeoutSeconds", where, 300, 1, 86400),
        scheduled_for_ms=_scheduled_for(obj.get("scheduledFor"), where),
        callback_url=_callback_url(obj.get("callbackUrl"), where),
        callback_headers_json=_callback_headers(obj.get("callbackHeaders"), where),
    )


def _scheduled_for(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        at_ms = ms_from_iso(value)
    except (ValueError, TypeError):
        raise InvalidParam(
            f"{where}scheduledFor must be an ISO-8601 time with a zone in years 0001-9999, "
            "e.g. 2030-01-01T00:00:00.000Z"
        ) from None
    if at_ms <= now_ms():
        raise InvalidParam(f"{where}scheduledFor must be in the future")
    return at_ms


def _callback_url(value: Any, where: str) -> str | None:
    if value is None:
        return None
    problem = (
        f"{where}callbackUrl must be an absolute http(s) URL of at most {MAX_CALLBACK_URL_CHARS} characters "
        "with a valid host name or IP address"
    )
    if not isinstance(value, str) or len(value) > MAX_CALLBACK_URL_CHARS or URL_FORBIDDEN.search(value):
        raise InvalidParam(problem)
    try:
        url = URL(value)
        host = url.raw_host
        url.port  # noqa: B018 - raises on a port out of range
    except (ValueError, UnicodeError):
        raise InvalidParam(problem) from None
    if url.scheme not in ("http", "https") or not host or not _is_host(host):
        raise InvalidParam(problem)
    return value


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name (already IDNA-encoded) whose every label is valid."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)


def _callback_headers(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_CALLBACK_HEADERS:
        raise InvalidParam(f"{where}callbackHeaders must be an object of at most {MAX_CALLBACK_HEADERS} string values")
    for header, header_value in value.items():
        if not isinstance(header_value, str):
            raise InvalidParam(f"{where}callbackHeaders.{header} must be a string")
        if not HEADER_NAME.fullmatch(header) or not HEADER_VALUE.fullmatch(header_value):
            raise InvalidParam(f"{where}callbackHeaders.{header} is not a valid HTTP header")
        if header.lower() in FRAMING_HEADERS:
            raise InvalidParam(f"{where}callbackHeaders.{header} is set by joblens itself; leave it out")
    return orjson.dumps(value)


def parse_progress(body: bytes) -> dict[str, Any]:
    """``{percent 0-100, message non-empty, subProgress?: {stage: {percent, message?}}}``."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidParam("body must be a JSON object with percent and message")
    unknown = sorted(set(document) - {"percent", "message", "subProgress"})
    if unknown:
        raise InvalidParam(f"{unknown[0]} is not a progress field; allowed: message, percent, subProgress")
    progress: dict[str, Any] = {
        "percent": _percent(document.get("percent"), "percent"),
        "message": _message(document.get("message"), "message", required=True),
    }
    sub = document.get("subProgress")
    if sub is not None:
        if not isinstance(sub, dict) or len(sub) > 100:
            raise InvalidParam("subProgress must be an object of at most 100 stages")
        stages: dict[str, Any] = {}
        for stage, value in sub.items():
            if not isinstance(value, dict) or set(value) - {"percent", "message"}:
                raise InvalidParam(f"subProgress.{stage} must be an object with percent and optional message")
            stages[stage] = {"percent": _percent(value.get("percent"), f"subProgress.{stage}.percent")}
            message = _message(value.get("message"), f"subProgress.{stage}.message", required=False)
            if message is not None:
                stages[stage]["message"] = message
        progress["subProgress"] = stages
    return progress


def _percent(value: Any, name: str) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise InvalidParam(f"{name} must be a number between 0 and 100")
    return value


def _message(value: Any, name: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 10_000:
        raise InvalidParam(f"{name} must be a non-empty string of at most 10000 characters")
    return value
