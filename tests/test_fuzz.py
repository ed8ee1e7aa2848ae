"""Schemathesis fuzzing of every documented operation against a live instance on a loopback port.

Valid and invalid requests are generated from ``service/api/openapi.json``; every answer must be free of 5xx and
exactly as documented (status code, content type, headers, body schema). Generation is derandomized: the same
code sends the same requests every time (Hypothesis also draws constants from the project's source files).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, SerializationContext
from schemathesis.errors import FailureGroup

from tests.helpers import AppFactory, Tenant, body, create_job

DOCUMENT_PATH = Path(__file__).parents[1] / "service" / "api" / "openapi.json"
MIN_REQUESTS = 2000
MAX_DURATION_S = 150.0  # calls stop at this deadline; a normal run takes well under a minute
# Hypothesis examples per operation and generation mode, after the ~1000 deterministic coverage cases.
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 40}
ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # invalid input must be refused with a 4xx
)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: SerializationContext, value: Any) -> bytes:
    """The document describes NDJSON lines as an array: send one JSON value per line."""
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
                # Schemathesis's default statuses, plus 413 for a batch above the documented maximum.
                "negative_data_rejection": {
                    "enabled": True,
                    "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"],
                },
            },
            "generation": {"with-security-parameters": False, "deterministic": True},
        }
    )


@dataclass
class Findings:
    """What the run saw: requests sent, answers by status, and failed checks (one example of each kind)."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    per_operation: dict[str, int] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def report(self) -> str:
        return "\n\n".join(f"{op} — {title}\n{example}" for (op, title, _), example in sorted(self.failures.items()))


def addresses_its_operation(case: Any) -> bool:
    """False for a path parameter that turns the URL into another route's: the HTTP client sends neither "."
    nor ".." segments (it resolves them) and does not encode "/" in a path parameter."""
    return not any(value in (".", "..") or "/" in value for value in map(str, (case.path_parameters or {}).values()))


def has_inputs(operation: Any) -> bool:
    return any([*operation.path_parameters, *operation.query, *operation.headers]) or bool(operation.body)


def strategies_for(operation: Any, mode: GenerationMode, space_id: str, job_ids: list[str]) -> st.SearchStrategy[Any]:
    """Cases of one operation: mostly aimed at the key's own space and at real jobs, also at generated ids."""
    names = {parameter.name for parameter in operation.path_parameters}
    only_path_inputs = not any([*operation.query, *operation.headers]) and not operation.body
    fixed: list[dict[str, str]] = []
    if "spaceId" in names:
        fixed = [{"spaceId": space_id}] * 3
    if "jobId" in names:
        fixed = [{"jobId": job_id} for job_id in job_ids]
    if mode is GenerationMode.NEGATIVE and only_path_inputs:
        fixed = []  # with its path fixed, such an operation has nothing left to make invalid
    generated = operation.as_strategy(generation_mode=mode)
    return st.one_of([generated, *(operation.as_strategy(generation_mode=mode, path_parameters=p) for p in fixed)])


def fuzz(base_url: str, api_key: str, space_id: str, job_ids: list[str], deadline: float) -> Findings:
    """Run every operation in both modes (blocking: call from a thread while the server's loop serves)."""
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT_PATH.read_text()), config=fuzz_config())
    findings = Findings()
    session = requests.Session()
    # Both documented ways to present the key, alternately.
    credentials = itertools.cycle([{"x-api-key": api_key}, {"Authorization": f"Bearer {api_key}"}])

    def check(case: Any) -> None:
        if time.monotonic() > deadline or not addresses_its_operation(case):
            return
        headers = next(credentials)
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        findings.requests += 1
        findings.statuses[response.status_code] = findings.statuses.get(response.status_code, 0) + 1
        label = case.operation.label
        findings.per_operation[label] = findings.per_operation.get(label, 0) + 1
        try:
            case.validate_response(response, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (label, failure.title, type(failure).__name__)
                curl = case.as_curl_command(headers={"x-api-key": "<key>"})
                findings.failures.setdefault(
                    key, f"{failure.message}\n{response.status_code} {response.text[:300]}\n{curl}"
                )

    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    real_jobs = itertools.cycle(job_ids)
    for operation in operations:
        # Coverage: boundary values, missing and mistyped fields, unexpected methods — aimed at real records.
        for case in schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        ):
            path = case.path_parameters or {}
            if ULID.fullmatch(str(path.get("spaceId", ""))):
                path["spaceId"] = space_id
            if ULID.fullmatch(str(path.get("jobId", ""))):
                path["jobId"] = next(real_jobs)
            check(case)
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
                continue  # nothing to make invalid
            run = settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
                print_blob=False,
            )(given(case=strategies_for(operation, mode, space_id, job_ids))(check))
            run()
    session.close()
    return findings


async def seed_jobs(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> list[str]:
    """Real jobs in every state, one with log lines, so generated calls also reach existing records."""
    jobs_url = f"/api/v1/spaces/{tenant.space_id}/jobs"
    created = await body(
        await client.post(
            jobs_url,
            json=[
                {"name": "pending"},
                {"name": "delivered"},
                {"name": "running", "callbackUrl": "http://127.0.0.1:9/hook", "callbackHeaders": {"X-A": "b"}},
                {"name": "completed", "payload": {"n": 1}},
                {"name": "killed"},
                {"name": "scheduled", "scheduledFor": "2999-01-01T00:00:00.000Z"},
            ],
            headers=admin,
        ),
        201,
    )
    ids = {job["name"]: job["id"] for job in created}
    seed_calls: dict[str, list[tuple[str, dict[str, Any] | None]]] = {
        "delivered": [("claim", None)],
        "running": [("claim", None), ("ack", None), ("progress", {"percent": 5, "message": "started"})],
        "completed": [("claim", None), ("ack", None), ("complete", {"result": {"ok": True}})],
        "killed": [("kill", {"reason": "seed"})],
    }
    for name, calls in seed_calls.items():
        for call, payload in calls:
            await body(await client.post(f"/api/v1/jobs/{ids[name]}/{call}", json=payload, headers=admin), 200)
    lines = [{"message": f"line {n} of the seed", "level": ["info", "warn", "error"][n % 3]} for n in range(30)]
    await body(await client.post(f"/api/v1/jobs/{ids['running']}/logs", json=lines, headers=admin), 200)
    extra = await create_job(client, tenant, admin, name="another")
    return [*ids.values(), extra["id"]]


@pytest.mark.timeout(240)
async def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    # Streams of jobs that never end would hold each call until the deadline: they end with `reconnect` at once.
    client = await make_client(rate_limit_per_s=1_000_000, stream_max_duration_s=0.05)
    job_ids = await seed_jobs(client, tenant, admin)
    base_url = str(client.make_url("")).rstrip("/")
    started = time.monotonic()
    findings = await asyncio.to_thread(
        fuzz, base_url, admin["x-api-key"], tenant.space_id, job_ids, started + MAX_DURATION_S
    )
    duration_s = time.monotonic() - started
    print(f"\nfuzz: {findings.requests} requests in {duration_s:.1f}s, statuses {sorted(findings.statuses.items())}")
    print("\n".join(f"  {count:5d}  {label}" for label, count in findings.per_operation.items()))
    assert not findings.failures, findings.report()
    assert findings.requests >= MIN_REQUESTS, (findings.requests, duration_s)
    assert duration_s < MAX_DURATION_S
