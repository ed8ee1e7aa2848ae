"""The web viewer's files (``service/ui/``), served at ``/ui/``: static, public, and locked down by headers.

The viewer is plain files that call the public API from the browser, so serving it needs no key: the files hold no
data. What they must never do is run anything but themselves, hence a strict Content-Security-Policy on every
answer: scripts and styles from this origin only (no inline script, no ``eval``), requests to this origin only,
and Trusted Types required, so that even a slip such as ``element.innerHTML = message`` throws instead of
turning a log line into markup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
UI_PREFIX = "/ui/"

# By suffix; a file of any other kind in the folder is not served (nothing is served by guessing its type).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # the sign-in form is handled in the page, never submitted
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",  # string → HTML sinks (innerHTML, …) throw
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidated on every use (a 304 while unchanged): after an upgrade no browser runs yesterday's script
    # against today's API.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(directory: Path) -> dict[str, Asset]:
    """Every servable file directly in ``directory``, by name. Requests are looked up in this table only, so no
    path a client sends ever reaches the file system."""
    assets: dict[str, Asset] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        assets[path.name] = Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return assets


# Read once, at import, like the OpenAPI document: the files ship with the package and change only with it.
ASSETS = load_assets(UI_DIR)


@routes.get("/ui")
async def ui_root(request: web.Request) -> web.StreamResponse:
    # The page's relative links and module paths resolve against /ui/, so the bare path must redirect there.
    query = request.query_string
    raise web.HTTPPermanentRedirect(UI_PREFIX + (f"?{query}" if query else ""))


@routes.get(UI_PREFIX)
async def ui_index(request: web.Request) -> web.Response:
    return _asset_response(request, ASSETS["index.html"])


@routes.get(UI_PREFIX + "{name}")
async def ui_file(request: web.Request) -> web.Response:
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    return _asset_response(request, asset)


def _asset_response(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if _matches(request.headers.get("If-None-Match", ""), asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def _matches(if_none_match: str, etag: str) -> bool:
    # a weak comparison (RFC 9110 §13.1.2): a proxy that compressed the file may have marked its tag weak
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
