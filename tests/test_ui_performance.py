"""What the viewer costs, measured in Chromium and reported (never asserted against a time: the machine is shared):
the time to the first line of a job page, and how smooth the frames stay while 1,000 lines/s arrive live and while
the reader scrolls back. The figures are printed and kept in ``tests/artifacts/ui/figures.json``."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import Tenant
from tests.ui_helpers import WAIT_MS, Viewer, append_lines, append_many, bearer_key, create_job, record_figures, viewer

LINES_PER_S = 1000
BURST_S = 8
BATCHES_PER_S = 10  # as a worker's log handler ships them: a batch every 100 ms

# Frame gaps by requestAnimationFrame, long tasks (> 50 ms on the main thread) by PerformanceObserver, and the most
# log rows the DOM held at once.
START_PROBE = """() => {
  const probe = window.__probe = { gaps: [], longTasks: [], mostRows: 0, stopped: false };
  new PerformanceObserver(list => { for (const task of list.getEntries()) probe.longTasks.push(task.duration); })
    .observe({ type: 'longtask' });
  let last = performance.now();
  const frame = now => {
    probe.gaps.push(now - last);
    last = now;
    probe.mostRows = Math.max(probe.mostRows, document.querySelectorAll('#log-scroller .log-row[data-seq]').length);
    if (!probe.stopped) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""
STOP_PROBE = "() => { window.__probe.stopped = true; return window.__probe; }"


def frame_figures(probe: dict[str, Any]) -> dict[str, Any]:
    gaps = sorted(probe["gaps"][1:])  # the first gap is from the probe's start, not a frame
    seconds = sum(gaps) / 1000
    long_tasks = probe["longTasks"]
    return {
        "frames": len(gaps),
        "fps": round(len(gaps) / seconds, 1) if seconds else None,
        "frame_gap_ms_p50": round(statistics.median(gaps), 1),
        "frame_gap_ms_p95": round(gaps[int(len(gaps) * 0.95)], 1),
        "frame_gap_ms_max": round(gaps[-1], 1),
        "frames_over_50ms": sum(gap > 50 for gap in gaps),
        "long_tasks": len(long_tasks),
        "long_task_ms_total": round(sum(long_tasks), 1),
        "long_task_ms_max": round(max(long_tasks, default=0), 1),
        "most_rows_in_dom": probe["mostRows"],
    }


async def first_line_ms(ui: Viewer, job_id: str) -> tuple[float, float]:
    """A fresh load of the job's page: ms from navigation to the first line drawn, and from the page's start
    (its modules loaded, the job page opened) to it."""
    await ui.open(f"/ui/?job={job_id}")
    await ui.wait_until("() => performance.getEntriesByName('joblens:first-line').length > 0")
    marks: list[float] = await ui.page.evaluate(
        "() => ['joblens:job-open', 'joblens:first-line'].map(name => performance.getEntriesByName(name)[0].startTime)"
    )
    return marks[1], marks[1] - marks[0]


async def test_time_to_first_line_and_frames_while_1000_lines_per_s_arrive(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_many(client, job["id"], admin, 10_000)
    async with viewer(client, "performance") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        loads = [await first_line_ms(ui, job["id"]) for _ in range(5)]
        await ui.wait_until("() => document.querySelector('#stream-status').textContent.includes('live')")
        await ui.screenshot("first-line")

        # 1,000 lines/s for BURST_S seconds, in batches sent on a fixed schedule (each append waits until its
        # lines are searchable, so the batches overlap rather than queue)
        await page.evaluate(START_PROBE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch_lines = LINES_PER_S // BATCHES_PER_S
        batches = BURST_S * BATCHES_PER_S

        async def send(number: int) -> float:
            await asyncio.sleep(max(0.0, started + number / BATCHES_PER_S - loop.time()))  # pacing, not waiting
            lines = [{"message": f"burst {number} line {n} \x1b[32mok\x1b[0m"} for n in range(batch_lines)]
            await append_lines(client, job["id"], admin, lines)
            return loop.time()

        acknowledged = await asyncio.gather(*(send(number) for number in range(batches)))
        last_seq = 10_000 + batches * batch_lines
        await page.wait_for_selector(f'#log-scroller .log-row[data-seq="{last_seq}"]', timeout=WAIT_MS)
        shown_at = loop.time()
        live = frame_figures(await page.evaluate(STOP_PROBE))
        await ui.screenshot("after-burst")
        assert (await ui.log_status()).startswith("Following")

        # the reader scrolls back through what arrived: wheel steps, rows built as they come into view
        await page.evaluate(START_PROBE)
        box = await page.locator("#log-scroller").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(60):
            await page.mouse.wheel(0, -900)
            await page.wait_for_timeout(16)  # about a frame between steps, as a fast wheel gives them
        scrolling = frame_figures(await page.evaluate(STOP_PROBE))
        await ui.screenshot("scrolled-back")

    figures = {
        "first_line_ms_from_navigation": [round(total) for total, _ in loads],
        "first_line_ms_from_job_open": [round(opened) for _, opened in loads],
        "first_line_ms_median": round(statistics.median(total for total, _ in loads)),
        "burst": {
            "lines": batches * batch_lines,
            "sent_lines_per_s": round(batches * batch_lines / (max(acknowledged) - started)),
            "last_line_shown_ms_after_its_ack": round((shown_at - max(acknowledged)) * 1000),
            **live,
        },
        "scrolling_back": scrolling,
    }
    record_figures("performance", figures)
