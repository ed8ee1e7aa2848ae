"""The client and the terminal client on the search endpoints: context (``around``), highlights, the search across
a space's jobs with its cursor, and the export download."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from joblens_client import AsyncJoblens, Joblens
from tests.client_helpers import base_url, key_of, terminal
from tests.helpers import body


async def seeded(jl: AsyncJoblens, name: str, count: int, needle_every: int = 10) -> str:
    job = await jl.create_job(name)
    needle = {"level": "warn", "message": "{name} {n} a needle here"}
    hay = {"level": "info", "message": "{name} {n} hay"}
    lines = [
        {**line, "message": line["message"].format(name=name, n=n)}
        for n in range(1, count + 1)
        for line in [needle if n % needle_every == 0 else hay]
    ]
    await jl.append_logs(job.id, lines)
    return job.id


async def test_around_pages_and_highlights(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        job_id = await seeded(jl, "ctx", 50)
        page = await jl.read_logs(job_id, around=25, limit=5)
        assert [line.seq for line in page.lines] == [23, 24, 25, 26, 27]
        cursor = page.cursor
        assert (cursor.mode, cursor.oldest_seq, cursor.newest_seq, cursor.has_older, cursor.has_newer) == (
            "around",
            23,
            27,
            True,
            True,
        )
        # around, then on: the context page and every newer page after it
        assert [line.seq for p in [p async for p in jl.pages(job_id, around=25, limit=5)] for line in p.lines] == list(
            range(23, 51)
        )
        found = await jl.read_logs(job_id, after=0, q="needle", highlight=True)
        where = len("ctx 10 a "), len("ctx 10 a needle")
        assert [(line.seq, line.highlights) for line in found.lines[:2]] == [(10, (where,)), (20, (where,))]
        raw = await body(
            await client.get(f"/api/v1/jobs/{job_id}/logs?after=0&q=needle&highlight=true", headers=admin), 200
        )
        assert [line.raw for line in found.lines] == raw["logs"]


async def test_space_search_follows_its_cursor(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    async with AsyncJoblens(base_url(client), key_of(admin)) as jl:
        alpha = await seeded(jl, "alpha", 40)
        beta = await seeded(jl, "beta", 30)
        hits = [line async for line in jl.search(q="needle")]
        assert {(line.job_id, line.job_name) for line in hits} == {(alpha, "alpha"), (beta, "beta")}
        assert sorted(line.message for line in hits) == sorted(
            [f"alpha {n} a needle here" for n in (10, 20, 30, 40)] + [f"beta {n} a needle here" for n in (10, 20, 30)]
        )
        assert [line.created_at for line in hits] == sorted((line.created_at for line in hits), reverse=True)
        pages = [page async for page in jl.search_pages(q="needle", limit=2)]
        assert [len(page.lines) for page in pages] == [2, 2, 2, 1] and pages[-1].next is None
        assert [line.id for page in pages for line in page.lines] == [line.id for line in hits]  # same order
        only_alpha = [line async for line in jl.search(q="needle", name="alpha", level="warn", max_lines=3)]
        assert [line.job_name for line in only_alpha] == ["alpha"] * 3
        highlighted = [line async for line in jl.search(q="needle", highlight=True, max_lines=1)]
        assert highlighted[0].highlights is not None and len(highlighted[0].highlights) == 1


async def test_export_downloads_every_line(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job_id = await seeded(jl, "exported", 1200 - 200)  # more than one page of the server's reads
        await jl.append_logs(job_id, [{"message": f"tail {n}"} for n in range(200)])
        ndjson = b"".join([chunk async for chunk in jl.export(job_id)])
        every = [line.raw async for line in jl.lines(job_id)]
        assert [orjson.loads(line) for line in ndjson.splitlines()] == every
        text = b"".join([chunk async for chunk in jl.export(job_id, format="text", level="warn")]).decode()
        assert (
            len(text.splitlines()) == 100 and text.splitlines()[0].split(" ", 1)[1] == "WARN  exported 10 a needle here"
        )

    def with_the_sync_client() -> tuple[int, int]:
        with Joblens(url, api_key) as sync:
            exported = b"".join(sync.export(job_id))
            return len(exported.splitlines()), len(list(sync.search(q="needle")))

    assert await asyncio.to_thread(with_the_sync_client) == (1200, 100)


async def test_the_terminal_search_and_context(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job_id = await seeded(jl, "termsearch", 30)
    found = await terminal(
        url, api_key, "search", "-q", "needle", "--name", "termsearch", "--since", "1h", "--limit", "2"
    )
    assert (found.code, found.stderr) == (0, "")
    rows = found.stdout.splitlines()
    assert [row.split(" ", 1)[1] for row in rows] == [
        f"WARN  termsearch {job_id}:30 termsearch 30 a needle here",
        f"WARN  termsearch {job_id}:20 termsearch 20 a needle here",
    ]
    as_json = await terminal(url, api_key, "search", "-q", "needle", "--name", "termsearch", "-o", "json")
    assert [orjson.loads(row)["jobId"] for row in as_json.stdout.splitlines()] == [job_id] * 3
    context = await terminal(url, api_key, "logs", job_id, "--around", "20", "--limit", "3")
    assert [row.split()[-3:] for row in context.stdout.splitlines()] == [
        ["termsearch", "19", "hay"],
        ["a", "needle", "here"],
        ["termsearch", "21", "hay"],
    ]
