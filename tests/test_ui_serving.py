"""The web viewer's files at /ui/: content types, caching, the Content-Security-Policy, and what they may not hold."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.api.ui import ASSETS, CONTENT_SECURITY_POLICY, UI_DIR

EXPECTED_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def ui_files() -> list[str]:
    return sorted(path.name for path in UI_DIR.iterdir() if path.suffix in EXPECTED_TYPES)


@pytest.mark.parametrize("name", ui_files())
async def test_each_file_is_served_with_its_type_and_the_security_headers(
    client: TestClient[Any, Any], name: str
) -> None:
    response = await client.get(f"/ui/{name}")  # no key: the files hold no data
    assert response.status == 200
    assert await response.read() == (UI_DIR / name).read_bytes()
    headers = response.headers
    assert headers["Content-Type"] == EXPECTED_TYPES[(UI_DIR / name).suffix]
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', headers["ETag"])


def test_the_policy_allows_this_origin_only_and_no_inline_script() -> None:
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["connect-src"] == "'self'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_the_index_is_served_at_the_folder_and_the_bare_path_redirects(client: TestClient[Any, Any]) -> None:
    index = await client.get("/ui/")
    assert index.status == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert await index.read() == (UI_DIR / "index.html").read_bytes()

    bare = await client.get("/ui?job=01J0000000000000000000000", allow_redirects=False)
    assert bare.status == 308
    assert bare.headers["Location"] == "/ui/?job=01J0000000000000000000000"


async def test_an_unchanged_file_is_revalidated_with_a_304(client: TestClient[Any, Any]) -> None:
    first = await client.get("/ui/app.js")
    etag = first.headers["ETag"]
    again = await client.get("/ui/app.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    weak = await client.get("/ui/app.js", headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status == 304
    changed = await client.get("/ui/app.js", headers={"If-None-Match": '"other"'})
    assert changed.status == 200


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/ui.py", "/ui/..%2Fapi%2Fui.py", "/ui/%2e%2e/app.py", "/ui/sub/app.js"]
)
async def test_nothing_but_the_viewer_files_is_served(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert await response.json() == {"error": "Not found"}


async def test_a_head_request_answers_the_headers_alone(client: TestClient[Any, Any]) -> None:
    response = await client.head("/ui/style.css")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/css; charset=utf-8"


def test_every_module_the_page_imports_is_served() -> None:
    index = (UI_DIR / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"#?:]+)"', index)) - {"./"}
    for script in UI_DIR.glob("*.js"):
        referenced |= set(re.findall(r"from '\./([^']+)'", script.read_text()))
    assert referenced <= set(ASSETS), referenced - set(ASSETS)


def test_the_page_has_no_inline_script_or_style() -> None:
    index = (UI_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", index) == []  # every script is a file
    assert re.findall(r"\son[a-z]+\s*=", index) == []  # no inline handlers
    assert re.findall(r"\sstyle\s*=", index) == []  # no style attributes (the policy would refuse them)


@pytest.mark.parametrize("name", sorted(path.name for path in UI_DIR.glob("*.js")))
def test_scripts_insert_text_never_markup(name: str) -> None:
    """Data enters the page as text: no HTML sinks, no string evaluation (Trusted Types would throw on the former
    at run time; this finds them before a test has to reach the line)."""
    source = (UI_DIR / name).read_text()
    code = re.sub(r"//.*", "", source)  # comments may name what the code avoids
    sinks = [r"\.innerHTML", r"\.outerHTML", "insertAdjacentHTML", r"document\.write", "createContextualFragment"]
    evaluation = [r"\beval\(", r"new Function\(", r"setTimeout\(['\"`]", r"setInterval\(['\"`]"]
    forbidden = "|".join(sinks + evaluation)
    assert re.findall(forbidden, code) == []
    assert "localStorage" not in code  # the key lives in sessionStorage only (this tab)
