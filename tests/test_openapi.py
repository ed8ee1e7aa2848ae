"""The OpenAPI document: served as written, valid, in step with the router, and true of real responses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from tests.helpers import AppFactory, Tenant, body, create_job

DOCUMENT_PATH = Path(__file__).parents[1] / "service" / "api" / "openapi.json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
ROUTE_PARAMETER = re.compile(r"\{(\w+):[^}]*\}")  # aiohttp's `{jobId:[^/]+}` is OpenAPI's `{jobId}`


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text())
    return document


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


def routed_operations(client: TestClient[Any, Any]) -> set[tuple[str, str]]:
    operations = set()
    for route in client.app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD beside every GET
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        assert template, f"route {route.method} {route.resource} has no path"
        if template == "/ui" or template.startswith("/ui/"):  # the web viewer's files: a page, not the API
            continue
        operations.add((route.method, ROUTE_PARAMETER.sub(r"{\1}", template)))
    return operations


def response_object(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, documented: {sorted(responses)}"
    response: dict[str, Any] = responses[str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def validator_for(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The schema's `#/components/...` references resolve against a root that carries the components.
    root = {**schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


async def conforms(response: ClientResponse, path: str, document: dict[str, Any] | None = None) -> Any:
    """Assert a real response is documented for its operation (status, content type, headers, body schema)."""
    document = document or load_document()
    documented = response_object(document, response.method, path, response.status)
    assert response.content_type == "application/json"
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{header} missing from {response.method} {path} {response.status}"
    payload = await response.json()
    schema = documented["content"]["application/json"]["schema"]
    problems = [error.message for error in validator_for(document, schema).iter_errors(payload)]
    assert not problems, (response.method, path, response.status, problems, payload)
    return payload


async def test_the_document_is_served_as_written(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert await body(response, 200) == load_document()
    assert response.content_type == "application/json"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load_document()
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_security_schemes_are_the_api_key_header_and_bearer() -> None:
    document = load_document()
    assert document["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "`emit_…` API key."},
        "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer emit_…`."},
    }
    public = {"/healthz", "/metrics", "/readyz", "/api/v1/openapi.json"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            if path in public:
                assert operation["security"] == [], (method, path)
            else:
                assert "security" not in operation, (method, path)  # the document-wide key or bearer applies
                assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)


async def test_every_route_is_documented_and_every_documented_operation_is_routed(
    client: TestClient[Any, Any],
) -> None:
    routed = routed_operations(client)
    documented = documented_operations(load_document())
    assert sorted(routed - documented) == [], "routes missing from service/api/openapi.json"
    assert sorted(documented - routed) == [], "documented operations the app does not route"
    assert len(routed) >= 20  # the iteration found the routes at all


def test_path_parameters_are_declared_for_every_templated_path() -> None:
    document = load_document()
    for path, item in document["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        declared = {
            document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
            for p in item.get("parameters", [])
        }
        assert names == declared, path


async def test_job_responses_match_their_schemas(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    document = load_document()
    jobs_path = f"/api/v1/spaces/{tenant.space_id}/jobs"
    one = await client.post(
        jobs_path,
        json={
            "name": "resize",
            "payload": {"w": 640},
            "maxRetries": 0,
            "callbackUrl": "http://127.0.0.1:9/hook",
            "callbackHeaders": {"Authorization": "Bearer x"},
        },
        headers=admin,
    )
    created = await conforms(one, "/api/v1/spaces/{spaceId}/jobs", document)
    assert one.status == 201 and created["callbackUrl"] == "http://127.0.0.1:9/hook"
    many = await client.post(
        jobs_path,
        json=[{"name": "a"}, {"name": "b", "scheduledFor": "2999-01-01T00:00:00.000Z"}],
        headers=admin,
    )
    assert [job["status"] for job in await conforms(many, "/api/v1/spaces/{spaceId}/jobs", document)] == [
        "pending",
        "scheduled",
    ]
    listed = await client.get(jobs_path, params={"limit": "10"}, headers=admin)
    assert len(await conforms(listed, "/api/v1/spaces/{spaceId}/jobs", document)) == 3

    job_url = f"/api/v1/jobs/{created['id']}"
    before = await client.get(f"{job_url}/progress", headers=admin)
    assert (await conforms(before, "/api/v1/jobs/{jobId}/progress", document))["progress"] is None
    poll = await client.post(f"{jobs_path}/poll", json={"names": ["resize"], "count": 5}, headers=admin)
    assert [job["id"] for job in (await conforms(poll, "/api/v1/spaces/{spaceId}/jobs/poll", document))["jobs"]] == [
        created["id"]
    ]
    for path, json_body in [
        ("ack", None),
        ("progress", {"percent": 40, "message": "resizing", "subProgress": {"fetch": {"percent": 100}}}),
        ("keepalive", None),
        ("checkpoint", {"step": 2}),
        ("event", {"type": "resized", "data": {"w": 640}}),
        ("fail", {"error": "out of memory"}),  # maxRetries 0: dead
    ]:
        response = await client.post(f"{job_url}/{path}", json=json_body, headers=admin)
        assert response.status == 200, await response.text()
        await conforms(response, f"/api/v1/jobs/{{jobId}}/{path}", document)
    after = await client.get(f"{job_url}/progress", headers=admin)
    assert (await conforms(after, "/api/v1/jobs/{jobId}/progress", document))["progress"]["percent"] == 40

    detailed = await conforms(await client.get(job_url, headers=admin), "/api/v1/jobs/{jobId}", document)
    assert [event["type"] for event in detailed["events"]] == [
        "created",
        "delivered",
        "started",
        "checkpoint",
        "resized",
        "dead",
    ]
    pending_id, scheduled_id = [job["id"] for job in await many.json()]
    claimed = await client.post(f"/api/v1/jobs/{pending_id}/claim", headers=admin)
    await conforms(claimed, "/api/v1/jobs/{jobId}/claim", document)
    await body(await client.post(f"/api/v1/jobs/{pending_id}/ack", headers=admin), 200)
    completed = await client.post(f"/api/v1/jobs/{pending_id}/complete", json={"result": [1, "two"]}, headers=admin)
    assert (await conforms(completed, "/api/v1/jobs/{jobId}/complete", document))["result"] == [1, "two"]
    killed = await client.post(f"/api/v1/jobs/{scheduled_id}/kill", json={"reason": "not needed"}, headers=admin)
    assert (await conforms(killed, "/api/v1/jobs/{jobId}/kill", document))["status"] == "killed"


async def test_log_responses_match_their_schemas(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    document = load_document()
    job = await create_job(client, tenant, admin)
    logs_url = f"/api/v1/jobs/{job['id']}/logs"
    appends = [
        await client.post(
            logs_url, json={"logs": [{"message": "one", "level": "WARN", "source": "w-1"}]}, headers=admin
        ),
        await client.post(
            logs_url,
            json=[{"message": "two", "metadata": {"n": 2}, "loggedAt": "2025-02-24T10:30:00+01:00"}],
            headers={**admin, "Idempotency-Key": "k-1"},
        ),
        await client.post(
            logs_url,
            data=b'{"message": "three", "level": "error"}\n\n{"message": "four"}\n',
            headers={**admin, "Content-Type": "application/x-ndjson"},
        ),
    ]
    answers = [await conforms(response, "/api/v1/jobs/{jobId}/logs", document) for response in appends]
    assert [(a["firstSeq"], a["lastSeq"]) for a in answers] == [(1, 1), (2, 2), (3, 4)]

    latest = await conforms(await client.get(logs_url, headers=admin), "/api/v1/jobs/{jobId}/logs", document)
    assert [line["message"] for line in latest["logs"]] == ["one", "two", "three", "four"]
    assert latest["logs"][1]["loggedAt"] == "2025-02-24T09:30:00.000Z"
    tail = await client.get(logs_url, params={"after": "1", "limit": "2", "level": "info,Error"}, headers=admin)
    assert (await conforms(tail, "/api/v1/jobs/{jobId}/logs", document))["cursor"] == {
        "mode": "after",
        "oldestSeq": 2,
        "newestSeq": 3,
        "hasMore": True,
    }
    empty = await client.get(logs_url, params={"before": "1", "q": "nothing"}, headers=admin)
    assert (await conforms(empty, "/api/v1/jobs/{jobId}/logs", document))["cursor"]["oldestSeq"] is None


@pytest.mark.parametrize(
    ("method", "path", "scopes", "json_body", "status"),
    [
        ("GET", "/api/v1/jobs/{jobId}", ("jobs:read",), None, 404),
        ("GET", "/api/v1/jobs/{jobId}/logs?limit=0", ("jobs:read",), None, 400),
        ("GET", "/api/v1/jobs/{jobId}/logs?after=1&before=2", ("jobs:read",), None, 400),
        ("GET", "/api/v1/spaces/{spaceId}/jobs?status=nope", ("jobs:read",), None, 400),
        ("GET", "/api/v1/spaces/{spaceId}/jobs", ("jobs:create",), None, 403),
        ("POST", "/api/v1/spaces/{spaceId}/jobs", ("jobs:create",), {"name": ""}, 400),
        ("POST", "/api/v1/spaces/{spaceId}/jobs", ("jobs:create",), [{"name": "x"}] * 1001, 413),
        ("POST", "/api/v1/jobs/{jobId}/event", ("jobs:event",), {"type": "created"}, 400),
        ("POST", "/api/v1/jobs/{jobId}/complete", ("jobs:complete",), None, 404),
        ("POST", "/api/v1/jobs/{jobId}/progress", ("jobs:read",), {"percent": 1, "message": "x"}, 403),
    ],
)
async def test_error_responses_match_their_schemas(
    client: TestClient[Any, Any],
    tenant: Tenant,
    method: str,
    path: str,
    scopes: tuple[str, ...],
    json_body: Any,
    status: int,
) -> None:
    headers = await tenant.key(*scopes)
    url = path.format(jobId="01JLQX0000000000000000000Z", spaceId=tenant.space_id)
    response = await client.request(method, url, json=json_body, headers=headers)
    assert response.status == status, await response.text()
    await conforms(response, path.split("?")[0])


async def test_wrong_state_unauthenticated_and_rate_limited_answers_match_their_schemas(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(rate_limit_per_s=2)
    job = await create_job(client, tenant, admin)
    conflict = await client.post(f"/api/v1/jobs/{job['id']}/ack", headers=admin)
    assert conflict.status == 409
    await conforms(conflict, "/api/v1/jobs/{jobId}/ack")

    unauthenticated = await client.get(f"/api/v1/jobs/{job['id']}")
    assert unauthenticated.status == 401
    await conforms(unauthenticated, "/api/v1/jobs/{jobId}")
    revoked = await client.get(f"/api/v1/jobs/{job['id']}", headers={"Authorization": "Bearer emit_nope"})
    assert revoked.status == 401
    await conforms(revoked, "/api/v1/jobs/{jobId}")

    statuses = []
    for _ in range(5):
        response = await client.get(f"/api/v1/jobs/{job['id']}", headers=admin)
        statuses.append(response.status)
        if response.status == 429:
            await conforms(response, "/api/v1/jobs/{jobId}")
            assert int(response.headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 429, statuses


async def test_health_responses_match_their_schemas(client: TestClient[Any, Any]) -> None:
    document = load_document()
    assert await conforms(await client.get("/healthz"), "/healthz", document) == {"status": "ok"}
    assert (await conforms(await client.get("/readyz"), "/readyz", document))["status"] == "ready"
    metrics = await client.get("/metrics")
    documented = response_object(document, "GET", "/metrics", metrics.status)
    assert metrics.content_type in documented["content"]
    assert "X-Request-Id" in metrics.headers


@pytest.mark.parametrize(
    ("method", "path", "json_body", "params"),
    [
        # A future time with a zone that is still in year 9999 locally: valid input, answered 201 or 400.
        ("POST", "/api/v1/spaces/{spaceId}/jobs", {"name": "x", "scheduledFor": "9999-12-31T23:59:59-14:00"}, None),
        # A log line time before year 1000: valid ISO-8601, answered 200 or 400 (not "store unavailable").
        ("POST", "/api/v1/jobs/{jobId}/logs", [{"message": "m", "loggedAt": "0999-12-31T23:59:59Z"}], None),
        # q of 1024 characters is allowed: percent-encoded 4-byte characters make a request line of ~12 KiB.
        ("GET", "/api/v1/jobs/{jobId}/logs", None, {"q": "\U0001f600" * 1024}),
    ],
)
async def test_edge_inputs_get_documented_answers(
    client: TestClient[Any, Any],
    tenant: Tenant,
    admin: dict[str, str],
    method: str,
    path: str,
    json_body: Any,
    params: dict[str, str] | None,
) -> None:
    job = await create_job(client, tenant, admin)
    url = path.format(jobId=job["id"], spaceId=tenant.space_id)
    response = await client.request(method, url, json=json_body, params=params, headers=admin)
    assert response.status < 500, await response.text()
    await conforms(response, path)
