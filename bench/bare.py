"""Bare aiohttp baselines: the P4 one answers the service's paths with constant JSON bodies; the P3 floor
(``POST /forward/<ES path>``) sends the request it got to Elasticsearch as it is, on the service's own lean
connections (`service.stores.es_http`, the cheapest way we know), and answers with what came back: what an
aiohttp service in front of Elasticsearch pays before doing anything.

Run the way the service runs (``web.run_app`` on the same event loop, no access log, INFO logging), in its own process:
``python -m bench.bare --port P --bodies FILE --es URL`` where FILE is ``{"job": "<json>", "progress": "<json>"}``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web
from elasticsearch import AsyncElasticsearch

from service.app import new_event_loop
from service.stores.es_http import EsHttp

Handler = Callable[[web.Request], Awaitable[web.Response]]


def constant(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handler


FORWARD_PREFIX = "/forward"
ES_HTTP = web.AppKey("es_http", EsHttp)


async def forward(request: web.Request) -> web.Response:
    target = request.path_qs[len(FORWARD_PREFIX) :]
    status, answer, _, _ = await request.app[ES_HTTP].exchange(target, await request.read())
    return web.Response(body=answer, status=status, content_type="application/json")


def es_connections(es_url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def connections(app: web.Application) -> AsyncIterator[None]:
        es = AsyncElasticsearch(es_url)  # only for its node pool: the requests go on EsHttp's own connections
        app[ES_HTTP] = EsHttp(es, timeout_s=30.0)
        try:
            yield
        finally:
            await app[ES_HTTP].close()
            await es.close()

    return connections


def build_app(job_body: bytes, progress_body: bytes, es_url: str | None = None) -> web.Application:
    app = web.Application()
    app.router.add_get("/api/v1/jobs/{jobId:[^/]+}", constant(job_body))
    app.router.add_get("/api/v1/jobs/{jobId:[^/]+}/progress", constant(progress_body))
    app.router.add_get("/healthz", constant(b'{"status":"ok"}'))
    if es_url is not None:
        app.router.add_post(FORWARD_PREFIX + "/{path:.*}", forward)
        app.cleanup_ctx.append(es_connections(es_url))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--es", help="Elasticsearch URL that /forward/… sends requests to")
    args = parser.parse_args()
    bodies = orjson.loads(args.bodies.read_bytes())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = build_app(bodies["job"].encode(), bodies["progress"].encode(), args.es)
    # the same event loop as `joblens serve`
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
