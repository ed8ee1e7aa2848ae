"""The web viewer in a real browser: Debian's Chromium, driven by Playwright, against a real app on a real port.

Each test opens a `Viewer` on a served app; it records what a person could not see (console errors, dialogs,
every request the page makes) and saves a screenshot of each step under ``tests/artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import ConsoleMessage, Dialog, Page, Request, ViewportSize, async_playwright

from tests.helpers import body

ARTIFACTS = Path(__file__).with_name("artifacts") / "ui"
# Debian's package (scripts/setup.sh installs it); Playwright's own browser downloads are never used.
CHROMIUM = Path(os.environ.get("JOBLENS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT: ViewportSize = {"width": 1280, "height": 860}
WAIT_MS = 15_000  # for what the page does by itself (a read, a stream event): generous on a loaded machine


@dataclass
class Viewer:
    """One browser tab on the viewer, and what it did."""

    page: Page
    base: str  # http://127.0.0.1:PORT
    name: str  # the test's name: the screenshots' prefix
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    steps: int = 0

    async def open(self, path: str = "/ui/") -> None:
        await self.page.goto(self.base + path)

    async def sign_in(self, api_key: str) -> None:
        await self.open()
        await self.page.fill("#api-key", api_key)
        await self.page.click("#sign-in-form button[type=submit]")
        await self.page.wait_for_selector("#jobs-view:not([hidden])", timeout=WAIT_MS)

    async def open_job(self, job_id: str, fragment: str = "") -> None:
        """Go to a job's page as a link in the list does (no reload), and wait for its log view to settle."""
        await self.page.evaluate(
            "([href]) => { history.pushState(null, '', href); dispatchEvent(new PopStateEvent('popstate')); }",
            [f"/ui/?job={job_id}{fragment}"],
        )
        await self.page.wait_for_selector("#job-view:not([hidden])", timeout=WAIT_MS)

    async def screenshot(self, step: str) -> Path:
        """Save the page as it is now: ``<test>-<NN>-<step>.png``."""
        self.steps += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.steps:02d}-{step}.png"
        await self.page.screenshot(path=str(path))
        return path

    async def row_seqs(self) -> list[int]:
        """The seqs of the log rows in the DOM (the virtualised view builds only those near the viewport)."""
        seqs: list[int] = await self.page.eval_on_selector_all(
            "#log-scroller .log-row:not(.probe)", "rows => rows.map(row => Number(row.dataset.seq))"
        )
        return sorted(seqs)

    async def wait_for_row(self, seq: int) -> None:
        await self.page.wait_for_selector(f'#log-scroller .log-row[data-seq="{seq}"]', timeout=WAIT_MS)

    async def row_text(self, seq: int) -> str:
        text: str = await self.page.inner_text(f'#log-scroller .log-row[data-seq="{seq}"] .msg')
        return text

    async def log_status(self) -> str:
        text: str = await self.page.inner_text("#log-status")
        return text

    async def wait_until(self, script: str, arg: Any = None) -> None:
        """Wait until ``script`` (a JS function of ``arg``) is true in the page."""
        await self.page.wait_for_function(script, arg=arg, timeout=WAIT_MS)

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]


@contextlib.asynccontextmanager
async def viewer(client: TestClient[Any, Any], name: str) -> AsyncIterator[Viewer]:
    """A headless Chromium tab on ``client``'s server; fails the test if the page logged an error."""
    base = str(client.make_url("")).rstrip("/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            page = await context.new_page()
            opened = Viewer(page, base, name)
            page.on("console", lambda message: _console(opened, message))
            page.on("pageerror", lambda error: opened.console_errors.append(f"pageerror: {error}"))
            page.on("dialog", lambda dialog: _dialog(opened, dialog))
            page.on("request", lambda request: opened.requests.append(request))
            yield opened
            assert opened.console_errors == [], opened.console_errors
        finally:
            await browser.close()


def _console(opened: Viewer, message: ConsoleMessage) -> None:
    # a 4xx the page asked for on purpose (a bad key) is logged by Chromium as a failed resource: not a page error
    if message.type == "error" and "Failed to load resource" not in message.text:
        opened.console_errors.append(message.text)


async def _dialog(opened: Viewer, dialog: Dialog) -> None:
    # an alert() would be the sign of script run from a log line: recorded, and dismissed so the page goes on
    opened.dialogs.append(dialog.message)
    await dialog.dismiss()


async def create_job(client: TestClient[Any, Any], space_id: str, headers: dict[str, str], **fields: Any) -> Any:
    response = await client.post(f"/api/v1/spaces/{space_id}/jobs", json={"name": "ui-job", **fields}, headers=headers)
    return await body(response, 201)


async def append_lines(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], lines: list[Any]) -> Any:
    response = await client.post(f"/api/v1/jobs/{job_id}/logs", json={"logs": lines}, headers=headers)
    return await body(response, 200)


async def append_many(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], count: int) -> None:
    """``count`` lines ``line N`` (N from 1), in batches of the API's maximum."""
    for start in range(1, count + 1, 1000):
        lines = [{"message": f"line {n}", "level": "info"} for n in range(start, min(start + 1000, count + 1))]
        await append_lines(client, job_id, headers, lines)


def bearer_key(headers: dict[str, str]) -> str:
    """The key of a `Tenant.key` header dict."""
    return headers["x-api-key"]


FIGURES = ARTIFACTS / "figures.json"


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print measured figures and keep them in ``tests/artifacts/ui/figures.json`` (for docs/viewer.md)."""
    print(f"\n{name}: {json.dumps(figures)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known[name] = figures
    FIGURES.write_text(json.dumps(known, indent=2) + "\n")
