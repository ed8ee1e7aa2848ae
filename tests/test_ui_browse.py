"""The web viewer in Chromium: signing in, the job list (filter, pages, live progress) and a job's page."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import Tenant, body
from tests.ui_helpers import WAIT_MS, append_lines, bearer_key, create_job, viewer


async def test_sign_in_checks_the_key_and_keeps_it_in_the_tab_only(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    key = bearer_key(await tenant.key("jobs:read"))
    log_only = bearer_key(await tenant.key("jobs:log"))
    async with viewer(client, "sign-in") as ui:
        page = ui.page
        await ui.open()
        await page.wait_for_selector("#sign-in-view:not([hidden])")
        await ui.screenshot("form")

        for attempt, expected in [
            ("not-a-key", "That is not an API key"),
            (f"emit_{tenant.space_id}_{'x' * 43}", "This key is unknown or revoked."),
            (log_only, "This key may not read jobs (it needs the jobs:read scope)."),
        ]:
            await page.fill("#api-key", attempt)
            await page.click("#sign-in-form button[type=submit]")
            await page.wait_for_selector("#sign-in-error:not([hidden])")
            assert expected in await page.inner_text("#sign-in-error")
            await page.wait_for_function("() => !document.querySelector('#sign-in-error[hidden]')")
        await ui.screenshot("refused")

        await page.fill("#api-key", key)
        await page.click("#sign-in-form button[type=submit]")
        await page.wait_for_selector("#jobs-view:not([hidden])")
        assert await page.input_value("#api-key") == ""  # the field does not keep it
        assert await page.evaluate("() => sessionStorage.getItem('joblens.apiKey')") == key
        assert await page.evaluate("() => localStorage.length") == 0
        assert await page.inner_text("#space-label") == f"space {tenant.space_id}"
        await ui.screenshot("signed-in")

        # the key travels only as a header, to this origin
        api_requests = [request for request in ui.requests if "/api/v1/" in request.url]
        assert api_requests
        assert all(request.url.startswith(ui.base) for request in ui.requests)
        assert not any(key in request.url for request in ui.requests)
        last = api_requests[-1]
        assert (await last.all_headers())["authorization"] == f"Bearer {key}"

        await page.click("#sign-out")
        await page.wait_for_selector("#sign-in-view:not([hidden])")
        assert await page.evaluate("() => sessionStorage.length") == 0


async def test_the_job_list_filters_by_status_pages_and_shows_live_progress(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    jobs = [await create_job(client, tenant.space_id, admin, name=f"job-{n:02d}") for n in range(23)]
    running = jobs[5]
    await body(await client.post(f"/api/v1/jobs/{running['id']}/claim", headers=admin), 200)
    await body(await client.post(f"/api/v1/jobs/{running['id']}/ack", headers=admin), 200)
    progress = {"percent": 40, "message": "resizing"}
    await body(await client.post(f"/api/v1/jobs/{running['id']}/progress", json=progress, headers=admin), 200)

    async with viewer(client, "job-list") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await page.wait_for_selector("#jobs-body tr")
        names = await page.eval_on_selector_all("#jobs-body .job-link", "links => links.map(link => link.textContent)")
        assert names == [f"job-{n:02d}" for n in range(22, 2, -1)]  # newest first, 20 a page
        bar = f'#jobs-body tr[data-job-id="{running["id"]}"] [role=progressbar]'
        await page.wait_for_selector(f'{bar}[aria-valuenow="40"]')
        await ui.screenshot("first-page")

        # live: the bar moves without a reload
        progress = {"percent": 75, "message": "almost"}
        await body(await client.post(f"/api/v1/jobs/{running['id']}/progress", json=progress, headers=admin), 200)
        await page.wait_for_selector(f'{bar}[aria-valuenow="75"]', timeout=WAIT_MS)
        assert "75% almost" in await page.inner_text(f'#jobs-body tr[data-job-id="{running["id"]}"]')

        await page.click("#next-page")
        await page.wait_for_function("() => document.querySelectorAll('#jobs-body tr').length === 3")
        names = await page.eval_on_selector_all("#jobs-body .job-link", "links => links.map(link => link.textContent)")
        assert names == ["job-02", "job-01", "job-00"]
        assert await page.is_disabled("#next-page")
        assert "page=2" in page.url
        await ui.screenshot("second-page")

        await page.select_option("#status-filter", "running")
        await page.wait_for_function("() => document.querySelectorAll('#jobs-body tr').length === 1")
        assert await page.inner_text("#jobs-body .job-link") == "job-05"
        assert "status=running" in page.url and "page=" not in page.url
        await ui.screenshot("running-only")

        await page.go_back()  # the filter and the page live in the URL: history works
        await page.wait_for_function("() => document.querySelectorAll('#jobs-body tr').length === 3")


async def test_a_job_page_shows_its_record_and_follows_status_progress_and_lines_live(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant.space_id, admin, name="resize", payload={"width": 640})
    async with viewer(client, "job-page") as ui:
        page = ui.page
        await ui.sign_in(bearer_key(admin))
        await page.click(f'#jobs-body a[href="?job={job["id"]}"]')
        await page.wait_for_selector("#job-view:not([hidden])")
        await page.wait_for_function("() => document.querySelector('#job-name').textContent === 'resize'")
        assert await page.inner_text("#job-status") == "pending"
        await page.wait_for_selector("#log-empty:not([hidden])")
        assert await page.inner_text("#log-empty") == "No log lines yet"
        await page.click(".job-details summary")
        assert '"width": 640' in await page.inner_text("#job-payload")
        assert "created" in await page.inner_text("#job-events")
        await page.wait_for_function("() => document.querySelector('#stream-status').textContent.includes('live')")
        await ui.screenshot("empty")

        # everything below arrives through the stream: the page does not reload anything by itself
        await body(await client.post(f"/api/v1/jobs/{job['id']}/claim", headers=admin), 200)
        await body(await client.post(f"/api/v1/jobs/{job['id']}/ack", headers=admin), 200)
        await page.wait_for_function("() => document.querySelector('#job-status').textContent === 'running'")
        progress = {"percent": 30, "message": "resizing", "subProgress": {"decode": {"percent": 100}}}
        await body(await client.post(f"/api/v1/jobs/{job['id']}/progress", json=progress, headers=admin), 200)
        await page.wait_for_selector('#job-progress > [role=progressbar][aria-valuenow="30"]', timeout=WAIT_MS)
        assert "decode" in await page.inner_text("#job-progress")

        await append_lines(client, job["id"], admin, [{"message": f"step {n}"} for n in range(1, 6)])
        await ui.wait_for_row(5)
        assert await ui.row_seqs() == [1, 2, 3, 4, 5]
        assert await ui.row_text(3) == "step 3"
        await append_lines(client, job["id"], admin, [{"message": "step 6", "level": "warn"}])
        await ui.wait_for_row(6)
        assert "WARN" in await page.inner_text('.log-row[data-seq="6"] .level')
        # the events table followed the status changes
        await page.wait_for_function("() => document.querySelector('#job-events').textContent.includes('started')")
        await ui.screenshot("live")

        await body(
            await client.post(f"/api/v1/jobs/{job['id']}/complete", json={"result": {"ok": True}}, headers=admin), 200
        )
        await page.wait_for_function("() => document.querySelector('#job-status').textContent === 'completed'")
        await page.wait_for_function(
            "() => document.querySelector('#stream-status').textContent.includes('log ended')", timeout=WAIT_MS
        )
        await page.wait_for_function("() => document.querySelector('#job-result').textContent.includes('ok')")
        await ui.screenshot("ended")
