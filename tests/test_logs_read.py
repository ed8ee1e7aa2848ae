"""GET /jobs/:jobId/logs: modes, cursor, limits, level and text filters."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body, create_job
from tests.logs_helpers import append, page, seqs

LEVEL_CYCLE = ("info", "debug", "warn", "error", "info", "trace", "fatal")


@pytest.fixture
async def job_id(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> str:
    """A job with 25 lines: seq n has level LEVEL_CYCLE[(n-1) % 7] and message 'line n ...'."""
    job = await create_job(client, tenant, admin)
    lines = [
        {"message": f"line {n} chunk-{n % 3} done", "level": LEVEL_CYCLE[(n - 1) % len(LEVEL_CYCLE)]}
        for n in range(1, 26)
    ]
    await append(client, job["id"], admin, lines[:10])
    await append(client, job["id"], admin, lines[10:])
    return str(job["id"])


async def test_latest_mode_returns_the_newest_lines_ascending(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    result = await page(client, job_id, admin, limit=5)
    assert seqs(result) == [21, 22, 23, 24, 25]
    assert result["cursor"] == {"mode": "latest", "oldestSeq": 21, "newestSeq": 25, "hasMore": True}
    everything = await page(client, job_id, admin)
    assert seqs(everything) == list(range(1, 26))
    assert everything["cursor"] == {"mode": "latest", "oldestSeq": 1, "newestSeq": 25, "hasMore": False}


async def test_after_mode_tails_and_reports_more(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    first = await page(client, job_id, admin, after=0, limit=10)
    assert seqs(first) == list(range(1, 11))
    assert first["cursor"] == {"mode": "after", "oldestSeq": 1, "newestSeq": 10, "hasMore": True}
    last = await page(client, job_id, admin, after=20, limit=10)
    assert seqs(last) == [21, 22, 23, 24, 25]
    assert last["cursor"] == {"mode": "after", "oldestSeq": 21, "newestSeq": 25, "hasMore": False}


async def test_empty_pages_have_null_cursor_seqs(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, tenant: Tenant
) -> None:
    assert await page(client, job_id, admin, after=25) == {
        "logs": [],
        "cursor": {"mode": "after", "oldestSeq": None, "newestSeq": None, "hasMore": False},
    }
    assert await page(client, job_id, admin, before=1) == {
        "logs": [],
        "cursor": {"mode": "before", "oldestSeq": None, "newestSeq": None, "hasMore": False},
    }
    silent_job = await create_job(client, tenant, admin)
    assert await page(client, silent_job["id"], admin) == {
        "logs": [],
        "cursor": {"mode": "latest", "oldestSeq": None, "newestSeq": None, "hasMore": False},
    }


async def test_before_pages_back_to_seq_1(client: TestClient[Any, Any], admin: dict[str, str], job_id: str) -> None:
    seen: list[int] = []
    result = await page(client, job_id, admin, limit=7)
    while True:
        seen = seqs(result) + seen
        assert result["logs"], "a page with hasMore must not be empty"
        if not result["cursor"]["hasMore"]:
            break
        result = await page(client, job_id, admin, before=result["cursor"]["oldestSeq"], limit=7)
        assert result["cursor"]["mode"] == "before"
    assert seen == list(range(1, 26))


async def test_level_filter_accepts_commas_repeats_and_any_case(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    expected = [n for n in range(1, 26) if LEVEL_CYCLE[(n - 1) % 7] in ("warn", "error")]
    by_comma = await page(client, job_id, admin, after=0, level="warn,ERROR")
    assert seqs(by_comma) == expected
    response = await client.get(f"/api/v1/jobs/{job_id}/logs?after=0&level=Warn&level=error", headers=admin)
    assert seqs(await body(response, 200)) == expected
    assert {line["level"] for line in by_comma["logs"]} == {"warn", "error"}


async def test_text_query_requires_every_word_and_supports_phrases(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    both_words = await page(client, job_id, admin, q="chunk-1 done")
    assert seqs(both_words) == [n for n in range(1, 26) if n % 3 == 1]
    assert seqs(await page(client, job_id, admin, q='"line 7 chunk"')) == [7]
    assert seqs(await page(client, job_id, admin, q='"chunk line"')) == []
    assert seqs(await page(client, job_id, admin, q="line 7 absent-word")) == []
    with_level = await page(client, job_id, admin, q="done", level="fatal")
    assert seqs(with_level) == [7, 14, 21]


@pytest.mark.parametrize(
    "text",
    [
        "level:error",
        "line*",
        "(line",
        "line)",
        '"unbalanced',
        "-line",
        "a/b",
        "back\\slash",
        "job_id:x OR seq:1",
    ],
)
async def test_query_syntax_never_fails_and_never_reaches_other_fields(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, text: str
) -> None:
    result = await page(client, job_id, admin, q=text)
    assert result["cursor"]["mode"] == "latest"
    assert all(line["message"].startswith("line ") for line in result["logs"])
    # none of these strings is a phrase of the messages, so nothing may match through another field
    if "line" not in text:
        assert result["logs"] == []


@pytest.mark.parametrize("text", ["*", "+-=&&||><!(){}[]^~?:\\/", '"'])
async def test_a_query_without_words_filters_nothing(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, text: str
) -> None:
    assert seqs(await page(client, job_id, admin, q=text, after=20)) == [21, 22, 23, 24, 25]


async def test_special_characters_are_searched_as_text(
    client: TestClient[Any, Any], admin: dict[str, str], tenant: Tenant
) -> None:
    job = await create_job(client, tenant, admin)
    await append(
        client, job["id"], admin, [{"message": "GET /api/v1/items failed: (timeout) * retry"}, {"message": "other"}]
    )
    assert seqs(await page(client, job["id"], admin, q="/api/v1/items (timeout)")) == [1]
    assert seqs(await page(client, job["id"], admin, q='"failed: (timeout)"')) == [1]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"after": 1, "before": 5}, "Use either after or before, not both"),
        ({"after": -1}, "after must be an integer >= 0, got '-1'"),
        ({"before": "x"}, "before must be an integer >= 0, got 'x'"),
        ({"limit": 0}, "limit must be an integer >= 1, got '0'"),
        ({"limit": "1.5"}, "limit must be an integer >= 1, got '1.5'"),
        (
            {"level": "info,verbose"},
            "level must be one or more of trace, debug, info, warn, error, fatal, got 'verbose'",
        ),
        ({"q": "x" * 1025}, "q must be at most 1024 characters, got 1025"),
    ],
)
async def test_bad_parameters_are_400(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, params: dict[str, Any], error: str
) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/logs", params=params, headers=admin)
    assert await body(response, 400) == {"error": error}


async def test_limit_above_500_is_clamped(client: TestClient[Any, Any], admin: dict[str, str], tenant: Tenant) -> None:
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, [{"message": f"m{i}"} for i in range(1000)])
    await append(client, job["id"], admin, [{"message": f"m{i}"} for i in range(1000, 1100)])
    result = await page(client, job["id"], admin, after=0, limit=9999)
    assert seqs(result) == list(range(1, 501))
    assert result["cursor"]["hasMore"] is True
    assert len((await page(client, job["id"], admin, q="x" * 1024))["logs"]) == 0
