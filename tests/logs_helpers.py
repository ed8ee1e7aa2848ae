"""Helpers for the log tests: append lines and follow a job's log like a tailing client."""

from __future__ import annotations

import asyncio
import time
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


async def all_seqs(client: TestClient[Any, Any], headers: dict[str, str], job_id: str) -> list[int]:
    """Every visible seq of the job, read as a tailer reads it (``after = newestSeq`` from 0)."""
    seqs: list[int] = []
    after = 0
    while True:
        response = await client.get(
            f"/api/v1/jobs/{job_id}/logs", params={"after": after, "limit": 500}, headers=headers
        )
        page = await response.json()
        assert response.status == 200, page
        if not page["logs"]:
            return seqs
        seqs.extend(line["seq"] for line in page["logs"])
        after = page["cursor"]["newestSeq"]


async def wait_watermark_settles(client: TestClient[Any, Any], headers: dict[str, str], job_id: str, top: int) -> None:
    """Ranges cut off by a fault are abandoned when their lease ends; wait until nothing holds readers back."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 1}, headers=headers)
        page = await response.json()
        if response.status == 200 and (not page["logs"] or page["logs"][-1]["seq"] >= top):
            return
        assert time.monotonic() < deadline, "the watermark did not settle"
        await asyncio.sleep(0.1)


# The template before the search fields: `message` analysed by the standard analyzer.
LEGACY_MAPPINGS = {
    "dynamic": "strict",
    "_routing": {"required": True},
    "properties": {
        "id": {"type": "keyword", "index": False, "doc_values": False},
        "job_id": {"type": "keyword"},
        "space_id": {"type": "keyword"},
        "seq": {"type": "long"},
        "level": {"type": "keyword"},
        "message": {"type": "text"},
        "source": {"type": "keyword", "ignore_above": 1024},
        "metadata": {"type": "object", "enabled": False},
        "logged_at": {"type": "date", "format": "strict_date_optional_time"},
        "created_at": {"type": "date", "format": "strict_date_optional_time"},
    },
}
