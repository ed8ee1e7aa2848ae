"""Log streams (Server-Sent Events): parse, open a stream on the live hub, write its events, close it."""

from __future__ import annotations

import contextlib

from aiohttp import web

from service.api.auth import caller, job_id_of, requires
from service.api.context import LIVE_HUB, REQUEST_ID
from service.domain.logs import parse_stream_query

routes = web.RouteTableDef()

# Never compressed (no compression is enabled on the response), never buffered by a proxy (X-Accel-Buffering).
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@routes.get("/api/v1/jobs/{jobId:[^/]+}/logs/stream")
@requires("jobs:read")
async def stream_logs(request: web.Request) -> web.StreamResponse:
    start = parse_stream_query(request.query, request.headers.get("Last-Event-ID"))
    principal = caller(request)
    hub = request.app[LIVE_HUB]
    stream = await hub.open(principal.space_id, job_id_of(request), principal.key_id, start)
    if stream is None:
        return web.Response(status=204)  # ended, and nothing left after the cursor: EventSource stops
    try:
        # the middleware's X-Request-Id would come too late: the headers leave with prepare()
        response = web.StreamResponse(headers={**SSE_HEADERS, "X-Request-Id": request[REQUEST_ID]})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client went away
            await stream.run(response.write)
        return response
    finally:
        hub.close(stream)
