"""Helpers for the log tests: append lines and follow a job's log like a tailing client."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import body


async def append(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], lines: list[Any]) -> Any:
    return await body(await client.post(f"/api/v1/jobs/{job_id}/logs", json={"logs": lines}, headers=headers), 200)


async def page(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get(f"/api/v1/jobs/{job_id}/logs", params=params, headers=headers)
    return await body(response, 200)


def seqs(result: Any) -> list[int]:
    return [line["seq"] for line in result["logs"]]
