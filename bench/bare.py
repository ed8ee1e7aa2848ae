"""The P4 baseline: a bare aiohttp app answering the service's paths with constant JSON bodies.

Run the way the service runs (``web.run_app`` on the same event loop, no access log, INFO logging), in its own process:
``python -m bench.bare --port P --bodies FILE`` where FILE is ``{"job": "<json>", "progress": "<json>"}``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web

from service.app import new_event_loop

Handler = Callable[[web.Request], Awaitable[web.Response]]


def constant(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handler


def build_app(job_body: bytes, progress_body: bytes) -> web.Application:
    app = web.Application()
    app.router.add_get("/api/v1/jobs/{jobId:[^/]+}", constant(job_body))
    app.router.add_get("/api/v1/jobs/{jobId:[^/]+}/progress", constant(progress_body))
    app.router.add_get("/healthz", constant(b'{"status":"ok"}'))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    args = parser.parse_args()
    bodies = orjson.loads(args.bodies.read_bytes())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = build_app(bodies["job"].encode(), bodies["progress"].encode())
    # the same event loop as `joblens serve`
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
