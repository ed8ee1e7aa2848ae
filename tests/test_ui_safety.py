"""A log line is text, never markup; the page cannot be made to run what it did not ship; the key stays in the tab."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import Tenant
from tests.ui_helpers import append_lines, bearer_key, create_job, viewer

HOSTILE = [
    "<script>window.__pwned = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
    "<svg onload=alert('svg')></svg> <b>bold?</b> &amp; &lt;b&gt; <a href=javascript:alert('a')>link</a>",
    '"><iframe srcdoc="<script>parent.alert(1)</script>"></iframe>',
]

ELEMENTS = """() => ({
  scripts: [...document.scripts].map(script => script.getAttribute('src')),
  injected: document.querySelectorAll('img, svg, iframe, b, #log-scroller a:not(.seq), #jobs-body script').length,
  pwned: window.__pwned ?? null,
})"""


async def test_markup_in_log_lines_job_names_and_sources_is_shown_as_text(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    hostile_name = "<img src=x onerror=alert('name')>"
    job = await create_job(client, tenant.space_id, admin, name=hostile_name)
    lines = [{"message": message, "level": "error"} for message in HOSTILE]
    lines.append({"message": "from a hostile source", "source": "<script>alert('source')</script>"})
    await append_lines(client, job["id"], admin, lines)
    async with viewer(client, "xss") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await page.wait_for_selector("#jobs-body .job-link")
        assert await page.inner_text("#jobs-body .job-link") == hostile_name
        await ui.screenshot("list")

        await page.click("#jobs-body .job-link")
        await ui.wait_for_row(5)
        for seq, message in enumerate(HOSTILE, start=1):
            assert await ui.row_text(seq) == message  # every character shown, none interpreted
        assert await ui.row_text(5) == "[<script>alert('source')</script>] from a hostile source"
        assert await page.inner_text("#job-name") == hostile_name
        await page.click(".job-details summary")
        await ui.screenshot("job")

        assert await page.evaluate(ELEMENTS) == {"scripts": ["app.js"], "injected": 0, "pwned": None}
        assert ui.dialogs == []


async def test_the_policy_stops_markup_and_script_the_page_did_not_ship(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    async with viewer(client, "policy") as ui:
        await ui.sign_in(bearer_key(admin))
        # Trusted Types: a string never becomes markup, even if some future code tried
        assert (
            await ui.page.evaluate(
                """() => { try { document.body.innerHTML = '<img src=x onerror=alert(1)>'; return 'assigned'; }
                       catch (error) { return error.name; } }"""
            )
            == "TypeError"
        )
        # nor script: an inline script element cannot get its text
        assert (
            await ui.page.evaluate(
                """() => { const script = document.createElement('script');
                       try { script.textContent = 'window.__inline = 1'; } catch (error) { return error.name; }
                       document.head.append(script); return String(window.__inline); }"""
            )
            == "TypeError"
        )
        # (eval itself cannot be tried from here: a test's own scripts are exempt from 'unsafe-eval', as devtools
        # are; test_ui_serving checks that the policy has no 'unsafe-eval')
        assert ui.dialogs == []
        # refusals are reported on the console; they are what this test expects
        ui.console_errors.clear()


async def test_the_key_goes_only_in_a_header_to_the_api_never_in_a_url(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin)
    await append_lines(client, job["id"], admin, [{"message": "hello"}])
    key = bearer_key(admin)
    async with viewer(client, "key") as ui:
        await ui.sign_in(key)
        await ui.open_job(job["id"])
        await ui.wait_for_row(1)
        await ui.page.wait_for_function("() => document.querySelector('#stream-status').textContent.includes('live')")
        assert not any(key in url for url in ui.urls())
        for request in ui.requests:
            headers = await request.all_headers()
            if "/api/v1/" in request.url:
                assert headers["authorization"] == f"Bearer {key}", request.url
            else:  # the viewer's own files: no key
                assert "authorization" not in headers, request.url
        stream = [request for request in ui.requests if "/logs/stream?" in request.url]
        assert len(stream) == 1
        assert await ui.page.evaluate("() => Object.keys(sessionStorage)") == ["joblens.apiKey"]
        assert await ui.page.evaluate("() => document.cookie") == ""
