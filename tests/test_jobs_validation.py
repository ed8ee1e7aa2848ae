"""The validation catalogue: every bad parameter or body is a 400 (or 413) naming what is wrong; never a 500.

Each table is checked in one test against one app, as a whole: a failure shows every case that differs.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from dirty_equals import IsStr

from tests.helpers import Tenant, body, create_job

STATUSES = "scheduled, pending, delivered, running, completed, dead, killed"
JOB_FIELDS = "callbackHeaders, callbackUrl, maxRetries, name, payload, scheduledFor, timeoutSeconds"
MIB = 1024 * 1024


async def answer(response: ClientResponse) -> tuple[int, Any]:
    """Status and body, whatever the body is, so that a table diff shows any unexpected answer."""
    raw = await response.read()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, raw.decode(errors="replace")


def encoded(document: Any) -> bytes:
    return document if isinstance(document, bytes) else orjson.dumps(document)


JSON = {"Content-Type": "application/json"}

LIST_QUERIES: dict[str, str] = {
    "limit=abc": "limit must be an integer >= 1, got 'abc'",
    "limit=-1": "limit must be an integer >= 1, got '-1'",
    "limit=0": "limit must be an integer >= 1, got '0'",
    "limit=1.5": "limit must be an integer >= 1, got '1.5'",
    "limit=": "limit must be an integer >= 1, got ''",
    "limit=1&limit=2": "limit must be given at most once",
    "offset=-1": "offset must be an integer >= 0, got '-1'",
    "offset=x": "offset must be an integer >= 0, got 'x'",
    "offset=2.0": "offset must be an integer >= 0, got '2.0'",
    "status=bogus": f"status must be one of {STATUSES}, got 'bogus'",
    "status=": f"status must be one of {STATUSES}, got ''",
}


async def test_list_parameters_are_checked(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    await create_job(client, tenant, admin)
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    answers = {query: await answer(await client.get(f"{path}?{query}", headers=admin)) for query in LIST_QUERIES}
    assert answers == {query: (400, {"error": error}) for query, error in LIST_QUERIES.items()}


async def test_list_accepts_every_status_and_clamps_a_large_limit(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    queries = [f"status={status}" for status in STATUSES.split(", ")] + [
        "limit=101",
        "limit=100000",
        "offset=0",
        "offset=999999999999999999",
        "offset=99999999999999999999999999",
        "limit=1000000000000000000",
        "limit=99999999999999999999999999999",
    ]
    answers = {query: await answer(await client.get(f"{path}?{query}", headers=admin)) for query in queries}
    assert answers == dict.fromkeys(queries, (200, []))


NAME_ERROR = "name is required: a string of 1 to 200 characters"
MAX_RETRIES_ERROR = "maxRetries must be an integer between 0 and 25"
TIMEOUT_ERROR = "timeoutSeconds must be an integer between 1 and 86400"
CALLBACK_URL_ERROR = (
    "callbackUrl must be an absolute http(s) URL of at most 2048 characters with a valid host name or IP address"
)
DEEP = 300  # levels of nesting: more than orjson writes back
SCHEDULED_FOR_FORMAT_ERROR = (
    "scheduledFor must be an ISO-8601 time with a zone in years 0001-9999, e.g. 2030-01-01T00:00:00.000Z"
)

CREATE_BODIES: dict[str, tuple[Any, str | IsStr]] = {
    "malformed JSON": (b'{"name": ', IsStr(regex=r"body is not valid JSON: .+")),
    "trailing garbage": (b'{"name": "a"} x', IsStr(regex=r"body is not valid JSON: .+")),
    "empty body": (b"", "body must be JSON, got an empty body"),
    "blank body": (b" \n", "body must be JSON, got an empty body"),
    "number body": (b"42", "body must be a job object or an array of job objects"),
    "string body": (b'"job"', "body must be a job object or an array of job objects"),
    "null body": (b"null", "body must be a job object or an array of job objects"),
    "empty array": (b"[]", "body must hold between 1 and 1000 jobs, got 0"),
    "missing name": ({}, NAME_ERROR),
    "empty name": ({"name": ""}, NAME_ERROR),
    "blank name": ({"name": "   "}, NAME_ERROR),
    "name of 201 characters": ({"name": "x" * 201}, NAME_ERROR),
    "name a number": ({"name": 5}, NAME_ERROR),
    "name null": ({"name": None}, NAME_ERROR),
    "name a list": ({"name": ["a"]}, NAME_ERROR),
    "payload a list": ({"name": "a", "payload": [1]}, "payload must be a JSON object"),
    "payload a string": ({"name": "a", "payload": "x"}, "payload must be a JSON object"),
    "payload a number": ({"name": "a", "payload": 5}, "payload must be a JSON object"),
    "maxRetries -1": ({"name": "a", "maxRetries": -1}, MAX_RETRIES_ERROR),
    "maxRetries 26": ({"name": "a", "maxRetries": 26}, MAX_RETRIES_ERROR),
    'maxRetries "3"': ({"name": "a", "maxRetries": "3"}, MAX_RETRIES_ERROR),
    "maxRetries true": ({"name": "a", "maxRetries": True}, MAX_RETRIES_ERROR),
    "maxRetries 1.5": ({"name": "a", "maxRetries": 1.5}, MAX_RETRIES_ERROR),
    "maxRetries huge": (b'{"name": "a", "maxRetries": 1000000000000000000000000000000}', MAX_RETRIES_ERROR),
    "timeoutSeconds 0": ({"name": "a", "timeoutSeconds": 0}, TIMEOUT_ERROR),
    "timeoutSeconds 86401": ({"name": "a", "timeoutSeconds": 86401}, TIMEOUT_ERROR),
    'timeoutSeconds "300"': ({"name": "a", "timeoutSeconds": "300"}, TIMEOUT_ERROR),
    "timeoutSeconds false": ({"name": "a", "timeoutSeconds": False}, TIMEOUT_ERROR),
    "callbackUrl ftp": ({"name": "a", "callbackUrl": "ftp://example.com/x"}, CALLBACK_URL_ERROR),
    "callbackUrl without scheme": ({"name": "a", "callbackUrl": "example.com/hook"}, CALLBACK_URL_ERROR),
    "callbackUrl scheme only": ({"name": "a", "callbackUrl": "https://"}, CALLBACK_URL_ERROR),
    "callbackUrl a number": ({"name": "a", "callbackUrl": 5}, CALLBACK_URL_ERROR),
    "callbackUrl too long": ({"name": "a", "callbackUrl": "https://e.com/" + "a" * 2048}, CALLBACK_URL_ERROR),
    "callbackUrl host label of 300 characters": (
        {"name": "a", "callbackUrl": "http://" + "a" * 300 + ".com/"},
        CALLBACK_URL_ERROR,
    ),
    "callbackUrl host with a space": ({"name": "a", "callbackUrl": "http://exa mple.com/"}, CALLBACK_URL_ERROR),
    "callbackUrl port out of range": ({"name": "a", "callbackUrl": "http://e.com:99999/"}, CALLBACK_URL_ERROR),
    "callbackUrl without host": ({"name": "a", "callbackUrl": "http:///hook"}, CALLBACK_URL_ERROR),
    "callbackUrl with CR LF": ({"name": "a", "callbackUrl": "http://h/a\r\nX-Injected: y"}, CALLBACK_URL_ERROR),
    "callbackUrl with a space": ({"name": "a", "callbackUrl": "http://h/a b"}, CALLBACK_URL_ERROR),
    "payload nested too deeply": (
        b'{"name": "a", "payload": {"a": ' + b"[" * DEEP + b"]" * DEEP + b"}}",
        "payload is nested too deeply: at most 251 levels",
    ),
    "callbackHeaders a list": (
        {"name": "a", "callbackHeaders": ["x"]},
        "callbackHeaders must be an object of at most 50 string values",
    ),
    "callbackHeaders name not a token": (
        {"name": "a", "callbackHeaders": {"X(": "v"}},
        "callbackHeaders.X( is not a valid HTTP header",
    ),
    "callbackHeaders value with a C1 control": (
        {"name": "a", "callbackHeaders": {"X-Token": "a\x85b"}},
        "callbackHeaders.X-Token is not a valid HTTP header",
    ),
    "callbackHeaders Content-Length": (
        {"name": "a", "callbackHeaders": {"Content-Length": "5"}},
        "callbackHeaders.Content-Length is set by joblens itself; leave it out",
    ),
    "callbackHeaders transfer-encoding": (
        {"name": "a", "callbackHeaders": {"transfer-encoding": "chunked"}},
        "callbackHeaders.transfer-encoding is set by joblens itself; leave it out",
    ),
    "callbackHeaders number value": (
        {"name": "a", "callbackHeaders": {"X-Token": 5}},
        "callbackHeaders.X-Token must be a string",
    ),
    "callbackHeaders null value": (
        {"name": "a", "callbackHeaders": {"X-Token": None}},
        "callbackHeaders.X-Token must be a string",
    ),
    "callbackHeaders bad name": (
        {"name": "a", "callbackHeaders": {"Bad Header": "v"}},
        "callbackHeaders.Bad Header is not a valid HTTP header",
    ),
    "callbackHeaders value with newline": (
        {"name": "a", "callbackHeaders": {"X-Token": "a\r\nInjected: 1"}},
        "callbackHeaders.X-Token is not a valid HTTP header",
    ),
    "scheduledFor in the past": (
        {"name": "a", "scheduledFor": "2020-01-01T00:00:00.000Z"},
        "scheduledFor must be in the future",
    ),
    "scheduledFor long ago with an offset": (
        {"name": "a", "scheduledFor": "0001-01-01T00:00:00+01:00"},
        SCHEDULED_FOR_FORMAT_ERROR,  # year 0 in UTC: outside 0001-9999
    ),
    "scheduledFor not a time": ({"name": "a", "scheduledFor": "tomorrow"}, SCHEDULED_FOR_FORMAT_ERROR),
    "scheduledFor without zone": ({"name": "a", "scheduledFor": "2099-01-01T00:00:00"}, SCHEDULED_FOR_FORMAT_ERROR),
    "scheduledFor a date": ({"name": "a", "scheduledFor": "2099-01-01"}, SCHEDULED_FOR_FORMAT_ERROR),
    "scheduledFor month 13": ({"name": "a", "scheduledFor": "2099-13-01T00:00:00Z"}, SCHEDULED_FOR_FORMAT_ERROR),
    "scheduledFor a number": ({"name": "a", "scheduledFor": 4102444800000}, SCHEDULED_FOR_FORMAT_ERROR),
    "unknown field": ({"name": "a", "priority": 1}, f"priority is not a job field; allowed: {JOB_FIELDS}"),
    "array element with a bad field": (
        [{"name": "a"}, {"name": "b", "maxRetries": 99}],
        f"[1].{MAX_RETRIES_ERROR}",
    ),
    "array element with an unknown field": (
        [{"name": "a"}, {"name": "b", "id": "x"}],
        f"[1].id is not a job field; allowed: {JOB_FIELDS}",
    ),
}


async def test_create_bodies_are_checked(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    answers = {
        case: await answer(await client.post(path, data=encoded(document), headers={**admin, **JSON}))
        for case, (document, _) in CREATE_BODIES.items()
    }
    assert answers == {case: (400, {"error": error}) for case, (_, error) in CREATE_BODIES.items()}
    assert await body(await client.get(path, headers=admin), 200) == []


async def test_an_array_element_that_is_not_an_object_is_named(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    answers = [
        await answer(await client.post(path, json=document, headers=admin))
        for document in ([1], [{"name": "a"}, "b"], [{"name": "a"}, None])
    ]
    assert answers == [
        (400, {"error": "[0] must be a job object"}),
        (400, {"error": "[1] must be a job object"}),
        (400, {"error": "[1] must be a job object"}),
    ]


async def test_a_batch_of_1000_jobs_is_accepted(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(await client.post(path, json=[{"name": "n"}] * 1000, headers=admin), 201)
    assert len(created) == 1000


async def test_a_batch_of_1001_jobs_is_413(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    """API.md: an array of at most 1,000 jobs; 413 for a body or batch too large."""
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    response = await client.post(path, json=[{"name": "n"}] * 1001, headers=admin)
    assert await answer(response) == (413, {"error": IsStr(regex=r".*1000.*")})
    assert await body(await client.get(path, headers=admin), 200) == []


async def test_a_payload_over_1_mib_is_413(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    at_limit = {"name": "a", "payload": {"blob": "x" * (MIB - len('{"blob":""}'))}}
    over = {"name": "a", "payload": {"blob": "x" * (MIB - len('{"blob":""}') + 1)}}
    answers = [
        await answer(await client.post(path, data=io.BytesIO(orjson.dumps(document)), headers={**admin, **JSON}))
        for document in (over, at_limit)
    ]
    assert answers[0] == (413, {"error": "payload must be at most 1048576 bytes as JSON"})
    assert answers[1][0] == 201


async def test_bodies_over_5_mib_are_413_json(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    oversized = b'{"name": "' + b"x" * (5 * MIB) + b'"}'
    paths = [f"/api/v1/spaces/{tenant.space_id}/jobs", f"/api/v1/jobs/{job['id']}/progress"]
    paths.append(f"/api/v1/jobs/{job['id']}/logs")
    answers = {
        path: await answer(await client.post(path, data=io.BytesIO(oversized), headers={**admin, **JSON}))
        for path in paths
    }
    assert answers == {
        paths[0]: (413, {"error": "Request body too large: at most 5242880 bytes"}),
        paths[1]: (413, {"error": "Request body too large: at most 2097152 bytes"}),
        paths[2]: (413, {"error": "Request body too large: at most 5242880 bytes"}),
    }
    listed = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs", headers=admin), 200)
    assert [listed_job["id"] for listed_job in listed] == [job["id"]]
    progress = await body(await client.get(f"/api/v1/jobs/{job['id']}/progress", headers=admin), 200)
    assert progress == {"jobId": job["id"], "progress": None, "timestamp": None}


PERCENT_ERROR = "percent must be a number between 0 and 100"
MESSAGE_ERROR = "message must be a non-empty string of at most 10000 characters"

PROGRESS_BODIES: dict[str, tuple[Any, str | IsStr]] = {
    "malformed JSON": (b'{"percent": 1,', IsStr(regex=r"body is not valid JSON: .+")),
    "empty body": (b"", "body must be JSON, got an empty body"),
    "array body": (b"[]", "body must be a JSON object with percent and message"),
    "null body": (b"null", "body must be a JSON object with percent and message"),
    "percent missing": ({"message": "m"}, PERCENT_ERROR),
    "percent -1": ({"percent": -1, "message": "m"}, PERCENT_ERROR),
    "percent 101": ({"percent": 101, "message": "m"}, PERCENT_ERROR),
    "percent 100.01": ({"percent": 100.01, "message": "m"}, PERCENT_ERROR),
    'percent "50"': ({"percent": "50", "message": "m"}, PERCENT_ERROR),
    "percent true": ({"percent": True, "message": "m"}, PERCENT_ERROR),
    "percent null": ({"percent": None, "message": "m"}, PERCENT_ERROR),
    "message missing": ({"percent": 1}, MESSAGE_ERROR),
    "message empty": ({"percent": 1, "message": ""}, MESSAGE_ERROR),
    "message blank": ({"percent": 1, "message": "  "}, MESSAGE_ERROR),
    "message a number": ({"percent": 1, "message": 5}, MESSAGE_ERROR),
    "message too long": ({"percent": 1, "message": "x" * 10_001}, MESSAGE_ERROR),
    "unknown field": (
        {"percent": 1, "message": "m", "eta": 5},
        "eta is not a progress field; allowed: message, percent, subProgress",
    ),
    "subProgress a list": (
        {"percent": 1, "message": "m", "subProgress": [1]},
        "subProgress must be an object of at most 100 stages",
    ),
    "subProgress stage a number": (
        {"percent": 1, "message": "m", "subProgress": {"download": 5}},
        "subProgress.download must be an object with percent and optional message",
    ),
    "subProgress stage percent 101": (
        {"percent": 1, "message": "m", "subProgress": {"download": {"percent": 101}}},
        "subProgress.download.percent must be a number between 0 and 100",
    ),
    "subProgress stage empty message": (
        {"percent": 1, "message": "m", "subProgress": {"download": {"percent": 1, "message": ""}}},
        "subProgress.download.message must be a non-empty string of at most 10000 characters",
    ),
}


async def test_progress_bodies_are_checked(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    job = await create_job(client, tenant, admin)
    path = f"/api/v1/jobs/{job['id']}/progress"
    answers = {
        case: await answer(await client.post(path, data=encoded(document), headers={**admin, **JSON}))
        for case, (document, _) in PROGRESS_BODIES.items()
    }
    assert answers == {case: (400, {"error": error}) for case, (_, error) in PROGRESS_BODIES.items()}
    assert await body(await client.get(path, headers=admin), 200) == {
        "jobId": job["id"],
        "progress": None,
        "timestamp": None,
    }
