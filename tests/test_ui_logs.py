"""The viewer's log view in Chromium: following and pausing, scrolling back through older pages (virtualised),
permalinks, the level filter, ANSI colours and wrapping."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import AppFactory, Tenant
from tests.ui_helpers import Viewer, append_lines, append_many, bearer_key, create_job, viewer

TOP_ROW = """() => {
  const scroller = document.querySelector('#log-scroller');
  const top = scroller.getBoundingClientRect().top;
  const rows = [...scroller.querySelectorAll('.log-row[data-seq]')]
    .filter(row => row.getBoundingClientRect().bottom > top + 1)
    .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
  return rows.length ? Number(rows[0].dataset.seq) : null;
}"""

ROW_IN_VIEW = """(seq) => {
  const row = document.querySelector(`#log-scroller .log-row[data-seq="${seq}"]`);
  if (!row) return false;
  const box = row.getBoundingClientRect(), frame = document.querySelector('#log-scroller').getBoundingClientRect();
  return box.top >= frame.top - 1 && box.bottom <= frame.bottom + 1;
}"""

DOM_ROWS = "() => document.querySelectorAll('#log-scroller .log-row[data-seq]').length"


async def scroll_log(ui: Viewer, delta_y: int) -> None:
    """A mouse wheel over the log, as a person scrolls."""
    box = await ui.page.locator("#log-scroller").bounding_box()
    assert box is not None
    await ui.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await ui.page.mouse.wheel(0, delta_y)


async def settled_top_row(ui: Viewer) -> int:
    """The top row once a wheel's smooth scroll has come to rest (the same row in two frames 250 ms apart)."""
    await ui.page.wait_for_function(
        f"""async () => {{
          const topRow = {TOP_ROW};
          const first = topRow();
          await new Promise(resolve => setTimeout(resolve, 250));
          return first !== null && first === topRow();
        }}"""
    )
    top: int = await ui.page.evaluate(TOP_ROW)
    return top


# the first seq of the lines loaded, as the status line under the log says it ("lines loaded (FIRST to LAST)")
WINDOW_START = "() => Number(document.querySelector('#log-status').textContent.match(/\\((\\d+)\u2013/)?.[1] ?? NaN)"


async def scroll_to_the_first_line(ui: Viewer, pages: int) -> int:
    """Scroll to the top again and again, each time until an older page has come in, until line 1 is in view
    (``pages``: at most that many pages, and one more look); returns the most rows the DOM held meanwhile."""
    most_rows = 0
    for _ in range(pages + 1):
        start = await ui.page.evaluate(WINDOW_START)
        await ui.page.evaluate("() => { document.querySelector('#log-scroller').scrollTop = 0; }")
        most_rows = max(most_rows, await ui.page.evaluate(DOM_ROWS))
        if start == 1:
            break
        await ui.wait_until(f"(start) => ({WINDOW_START})() < start", start)
    await ui.wait_until(ROW_IN_VIEW, 1)
    rows: int = await ui.page.evaluate(DOM_ROWS)
    return max(most_rows, rows)


async def test_the_view_follows_pauses_when_scrolled_up_and_jumps_back_to_the_latest(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_many(client, job["id"], admin, 300)
    async with viewer(client, "follow-pause") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_until(ROW_IN_VIEW, 300)
        assert (await ui.log_status()).startswith("Following")
        assert await ui.page.is_hidden("#jump-latest")

        await scroll_log(ui, -600)
        await ui.page.wait_for_selector("#jump-latest:not([hidden])")
        await ui.wait_until("() => document.querySelector('#log-status').textContent.startsWith('Paused')")
        top = await settled_top_row(ui)
        await ui.screenshot("paused")

        # new lines arrive while paused: the view stays where the reader is
        await append_lines(client, job["id"], admin, [{"message": f"late {n}"} for n in range(1, 51)])
        await ui.wait_until("() => document.querySelector('#log-status').textContent.includes('(101\u2013350)')")
        assert await ui.page.evaluate(TOP_ROW) == top
        assert not await ui.page.evaluate(ROW_IN_VIEW, 350)

        await ui.page.click("#jump-latest")
        await ui.wait_until(ROW_IN_VIEW, 350)
        assert (await ui.log_status()).startswith("Following")
        await append_lines(client, job["id"], admin, [{"message": "after the jump"}])
        await ui.wait_until(ROW_IN_VIEW, 351)  # following again
        await ui.screenshot("following-again")


async def test_scrolling_back_loads_older_pages_and_keeps_few_rows_in_the_dom(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_many(client, job["id"], admin, 5000)
    async with viewer(client, "scroll-back") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_until(ROW_IN_VIEW, 5000)
        await ui.screenshot("latest")
        most_rows = await scroll_to_the_first_line(ui, pages=11)
        assert await ui.page.evaluate(ROW_IN_VIEW, 1)
        assert await ui.row_text(1) == "line 1"
        assert "start of log" in await ui.log_status()
        assert "5,000 lines loaded (1\u20135000)" in await ui.log_status()
        before_pages = [url for url in ui.urls() if "/logs?" in url and "before=" in url]
        assert len(before_pages) >= 9
        # virtualised: 5,000 lines loaded, a screenful (and a margin) of rows built
        assert most_rows < 150, most_rows
        assert await ui.page.evaluate(DOM_ROWS) < 150
        await ui.screenshot("first-line")


async def test_a_permalink_opens_the_log_around_its_line_and_the_view_pages_back_to_the_live_edge(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_many(client, job["id"], admin, 3000)
    async with viewer(client, "permalink") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open(f"/ui/?job={job['id']}#seq=1234")  # a link someone shared: a fresh page load
        await ui.wait_until(ROW_IN_VIEW, 1234)
        assert await ui.page.get_attribute('.log-row[data-seq="1234"]', "class") == "log-row lvl-info focused"
        assert await ui.row_text(1234) == "line 1234"
        assert (await ui.log_status()).startswith("Viewing history")
        await ui.screenshot("opened")

        # each line's number is its permalink
        await ui.page.click('.log-row[data-seq="1240"] a.seq')
        assert ui.page.url.endswith("#seq=1240")
        await ui.wait_until("() => document.querySelector('.log-row.focused')?.dataset.seq === '1240'")

        # scrolling down loads newer pages until the newest line, where the stream takes over
        for _ in range(30):
            await ui.page.evaluate(
                "() => { const s = document.querySelector('#log-scroller'); s.scrollTop = s.scrollHeight; }"
            )
            if await ui.page.evaluate(ROW_IN_VIEW, 3000):
                break
            await ui.page.wait_for_timeout(100)  # a frame or two for the next page to be asked for
        await ui.wait_until(ROW_IN_VIEW, 3000)
        assert [url for url in ui.urls() if "after=" in url and "/logs?" in url]
        await append_lines(client, job["id"], admin, [{"message": "new at the edge"}])
        await ui.wait_until("() => !!document.querySelector('.log-row[data-seq=\"3001\"]')")
        assert await ui.row_text(3001) == "new at the edge"
        await ui.screenshot("back-at-the-edge")


async def test_levels_filter_ansi_colours_render_and_long_lines_wrap_or_scroll(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    long_message = "long " * 160
    lines = [
        {"message": "plain info"},
        {"message": "\x1b[31mred\x1b[0m normal \x1b[1;92mbright bold\x1b[0m \x1b[38;5;208m256\x1b[0m", "level": "warn"},
        {"message": "boom", "level": "error", "source": "worker-3"},
        {"message": "details", "level": "debug"},
        {"message": long_message},
    ]
    await append_lines(client, job["id"], admin, lines)
    async with viewer(client, "levels-ansi-wrap") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_for_row(5)

        assert await ui.row_text(2) == "red normal bright bold 256"  # no escape codes shown
        assert await page.inner_text('.log-row[data-seq="2"] .msg span.fg-31') == "red"
        assert await page.inner_text('.log-row[data-seq="2"] .msg span.fg-92.bold') == "bright bold"
        assert await ui.row_text(3) == "[worker-3] boom"
        await ui.screenshot("ansi")

        # without wrapping a long line scrolls sideways; with it, the row grows and nothing scrolls sideways
        height = "document.querySelector('.log-row[data-seq=\"5\"]').getBoundingClientRect().height"
        sideways = (
            "(() => { const s = document.querySelector('#log-scroller'); return s.scrollWidth > s.clientWidth; })()"
        )
        assert await page.evaluate(f"() => {sideways}")
        single = await page.evaluate(f"() => {height}")
        await page.check("#wrap-toggle")
        await ui.wait_until(f"(single) => {height} > 3 * single", single)
        assert not await page.evaluate(f"() => {sideways}")
        # the rows below moved down by what the wrapped row grew: none overlaps another
        await ui.wait_until(
            """() => {
              const rows = [...document.querySelectorAll('#log-scroller .log-row[data-seq]')]
                .map(row => row.getBoundingClientRect()).sort((a, b) => a.top - b.top);
              return rows.every((box, i) => i === 0 || box.top >= rows[i - 1].bottom - 0.5);
            }"""
        )
        await ui.screenshot("wrapped")

        await page.click('#level-filter [data-level="info"]')
        await page.click('#level-filter [data-level="debug"]')
        await ui.wait_until("() => document.querySelectorAll('#log-scroller .log-row[data-seq]').length === 2")
        assert await ui.row_seqs() == [2, 3]
        assert await page.get_attribute('[data-level="info"]', "aria-pressed") == "false"
        assert any("level=trace%2Cwarn%2Cerror%2Cfatal" in url for url in ui.urls())
        await ui.screenshot("warn-and-error")
        # lines of the levels shown keep arriving live; the others do not
        await append_lines(client, job["id"], admin, [{"message": "hidden"}, {"message": "shown", "level": "error"}])
        await ui.wait_for_row(7)
        assert await ui.row_seqs() == [2, 3, 7]


async def test_the_live_view_resumes_each_reconnect_by_last_event_id_without_a_gap_or_a_repeat(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    # every stream closes after a second with a `reconnect` event, as an instance that shuts down does
    client = await make_client(stream_max_duration_s=1.0)
    job = await create_job(client, tenant.space_id, admin)
    async with viewer(client, "resume") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.page.wait_for_function("() => document.querySelector('#stream-status').textContent.includes('live')")
        for batch in range(12):  # lines keep coming across several reconnects
            await append_lines(client, job["id"], admin, [{"message": f"batch {batch} line {n}"} for n in range(25)])
            await ui.page.wait_for_timeout(250)  # pacing the writer over about 3 s of streams
        await ui.wait_until(ROW_IN_VIEW, 300)
        streams = [request for request in ui.requests if "/logs/stream?" in request.url]
        assert len(streams) >= 3  # it did reconnect
        resumed = [(await request.all_headers()).get("last-event-id") for request in streams[1:]]
        assert all(resumed), resumed  # each reconnect named the last seq it had
        # every line once, in order: a gap would leave fewer than 300 (a repeat the view would drop by its seq)
        assert "300 lines loaded (1\u2013300)" in await ui.log_status()


async def test_a_long_log_is_held_as_a_window_of_at_most_20000_lines(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    """What keeps a job of a million lines as light as one of a thousand: the lines loaded are a window that is
    trimmed on the side away from the reader, and loaded again when the reader goes back there."""
    job = await create_job(client, tenant.space_id, admin)
    await append_many(client, job["id"], admin, 21_000)
    async with viewer(client, "window") as ui:
        await ui.sign_in(bearer_key(admin))
        await ui.open_job(job["id"])
        await ui.wait_until(ROW_IN_VIEW, 21_000)
        most_rows = await scroll_to_the_first_line(ui, pages=45)
        assert most_rows < 150, most_rows
        # the newest lines were let go: the view knows it is no longer at the live edge
        assert (await ui.log_status()).startswith("Viewing history")
        assert "20,000 lines loaded (1\u201320000)" in await ui.log_status()
        await ui.screenshot("first-line")

        await ui.page.click("#jump-latest")
        await ui.wait_until(ROW_IN_VIEW, 21_000)
        assert (await ui.log_status()).startswith("Following")
        await append_lines(client, job["id"], admin, [{"message": "still live"}])
        await ui.wait_until(ROW_IN_VIEW, 21_001)
