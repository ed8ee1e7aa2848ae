"""The viewer's search in Chromium: matches highlighted (the API's `highlights`), shown filtered or among every
line, a hit's context (`around`), and the whole log downloaded (the export endpoint)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import Tenant
from tests.ui_helpers import Viewer, append_lines, bearer_key, create_job, viewer

MARKS = """(seq) => [...document.querySelectorAll(`#log-scroller .log-row[data-seq="${seq}"] mark`)]
  .map(mark => mark.textContent)"""
ROWS = """() => [...document.querySelectorAll('#log-scroller .log-row[data-seq]')]
  .map(row => Number(row.dataset.seq)).sort((a, b) => a - b)"""


async def search(ui: Viewer, text: str, *, only_matches: bool = True) -> None:
    await ui.page.set_checked("#search-filter", only_matches)
    await ui.page.fill("#search-input", text)
    await ui.page.press("#search-input", "Enter")


async def test_a_search_shows_only_matches_and_highlights_each_one(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    lines = [
        {"message": "GET /img/1.png 200"},
        {"message": "nothing to see"},
        {"message": "img again: another img"},
        {"message": "IMG in capitals"},
        {"message": "\x1b[31mERROR\x1b[0m disk img full"},
    ]
    await append_lines(client, job["id"], admin, lines)
    async with viewer(client, "search-filter") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_for_row(5)
        await search(ui, "img")
        await ui.wait_until(f"() => JSON.stringify(({ROWS})()) === '[1,3,4,5]'")
        assert any("q=img" in url and "highlight=true" in url for url in ui.urls())
        await ui.wait_until(f"() => ({MARKS})(3).length === 2")
        assert await ui.page.evaluate(MARKS, 1) == ["img"]
        assert await ui.page.evaluate(MARKS, 3) == ["img", "img"]
        assert await ui.page.evaluate(MARKS, 4) == ["IMG"]
        # the API's offsets count the escape codes, which are not shown: the mark still lands on the word
        assert await ui.page.evaluate(MARKS, 5) == ["img"]
        assert await ui.row_text(5) == "ERROR disk img full"
        assert await ui.page.inner_text('.log-row[data-seq="5"] .fg-31') == "ERROR"
        await ui.screenshot("matches")

        # matching lines keep arriving live, highlighted; the others do not arrive
        await append_lines(client, job["id"], admin, [{"message": "no match"}, {"message": "late img"}])
        await ui.wait_until(f"() => ({MARKS})(7).length === 1")
        assert await ui.page.evaluate(ROWS) == [1, 3, 4, 5, 7]


async def test_a_search_can_highlight_matches_among_every_line_and_step_through_them(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_lines(
        client, job["id"], admin, [{"message": f"line {n}" + (" needle" if n % 10 == 0 else "")} for n in range(1, 101)]
    )
    async with viewer(client, "search-highlight") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_for_row(100)
        await search(ui, "needle", only_matches=False)
        await ui.wait_until(f"() => ({MARKS})(100).length === 1")
        assert await page.evaluate(MARKS, 99) == []
        assert len(await page.evaluate(ROWS)) > 20  # every line shown, not only the matches
        await ui.screenshot("highlighted")

        # step through the matches: each one in view, focused, in the URL
        await page.click("#previous-match")
        await ui.wait_until("() => document.querySelector('.log-row.focused')?.dataset.seq === '90'")
        assert page.url.endswith("#seq=90")
        await page.click("#previous-match")
        await ui.wait_until("() => document.querySelector('.log-row.focused')?.dataset.seq === '80'")
        await page.click("#next-match")
        await ui.wait_until("() => document.querySelector('.log-row.focused')?.dataset.seq === '90'")
        assert await page.evaluate(MARKS, 90) == ["needle"]
        await ui.screenshot("stepped")


async def test_a_hit_opens_its_context_and_leads_back_to_the_matches(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_lines(
        client, job["id"], admin, [{"message": f"line {n}" + (" needle" if n % 50 == 0 else "")} for n in range(1, 301)]
    )
    async with viewer(client, "search-context") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_for_row(300)
        await search(ui, "needle")
        await ui.wait_until(f"() => JSON.stringify(({ROWS})()) === '[50,100,150,200,250,300]'")
        await ui.screenshot("hits")

        async with page.expect_response(lambda response: "around=150" in response.url) as answered:
            await page.click('.log-row[data-seq="150"] button.context')
        context = await (await answered.value).json()
        assert context["cursor"]["mode"] == "around"
        seqs = [line["seq"] for line in context["logs"]]
        assert seqs == list(range(seqs[0], seqs[-1] + 1))  # unfiltered: every line around the hit
        assert seqs[0] < 149 and 150 in seqs and seqs[-1] > 151
        await ui.wait_until("() => document.querySelector('.log-row.focused')?.dataset.seq === '150'")
        assert await page.is_visible("#context-bar")
        rows = await page.evaluate(ROWS)
        assert {149, 150, 151} <= set(rows)
        assert await ui.row_text(149) == "line 149"
        await ui.wait_until(f"() => ({MARKS})(150).length === 1")  # the hit, still highlighted in its context
        assert page.url.endswith("#seq=150")
        await ui.screenshot("context")

        await page.click("#context-back")
        await ui.wait_until(f"() => JSON.stringify(({ROWS})()) === '[50,100,150,200,250,300]'")
        assert await page.is_hidden("#context-bar")


async def test_the_whole_log_downloads_as_text_or_ndjson_and_filtered(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    lines = [{"message": f"line {n}", "level": "warn" if n % 3 == 0 else "info"} for n in range(1, 1001)]
    await append_lines(client, job["id"], admin, lines)
    async with viewer(client, "download") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_for_row(1000)

        async with page.expect_download() as started:
            await page.click("#download")
        text = (await (await started.value).path()).read_text()
        assert len(text.splitlines()) == 1000
        assert "line 1\n" in text.replace("\r\n", "\n") or text.splitlines()[0].endswith("line 1")

        await page.select_option("#export-choice", "ndjson")
        async with page.expect_download() as started:
            await page.click("#download")
        download = await started.value
        exported = [json.loads(line) for line in (await download.path()).read_text().splitlines()]
        assert [line["seq"] for line in exported] == list(range(1, 1001))
        assert download.suggested_filename.endswith(".ndjson")

        await page.click('#level-filter [data-level="info"]')  # warn and the others: the filtered choices open
        await page.select_option("#export-choice", "ndjson-filtered")
        async with page.expect_download() as started:
            await page.click("#download")
        exported = [json.loads(line) for line in (await (await started.value).path()).read_text().splitlines()]
        assert [line["seq"] for line in exported] == list(range(3, 1001, 3))
        assert not any("/export" in url and "emit_" in url for url in ui.urls())
        await ui.screenshot("downloaded")
