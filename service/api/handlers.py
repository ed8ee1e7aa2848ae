"""HTTP handlers: parse → authorize → one service or store call → JSON. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from service.api.auth import caller, job_id_of, requires
from service.api.bodies import MEDIUM_BODY_BYTES, SMALL_BODY_BYTES, read_body
from service.api.context import ELASTICSEARCH, JOBS, LIFECYCLE, LOGS, METRICS, REDIS, REQUEST_ID, SETTINGS
from service.api.responses import json_response, raw_json_response
from service.domain.clock import now_ms
from service.domain.logs import (
    LOGS_LIMIT_MAX,
    LogQuery,
    export_chunk,
    parse_export_query,
    parse_idempotency_key,
    parse_log_query,
    parse_space_log_query,
)
from service.domain.validation import parse_list_jobs, parse_new_jobs, parse_progress
from service.domain.worker_bodies import (
    parse_checkpoint,
    parse_complete,
    parse_event,
    parse_fail,
    parse_kill,
    parse_poll,
)

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this instance's metrics."""
    return web.Response(body=request.app[METRICS].exposition(), content_type="text/plain", charset="utf-8")


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    redis_ok, es_ok = await asyncio.gather(_redis_answers(request), _elasticsearch_answers(request))
    states = {"redis": "ok" if redis_ok else "down", "elasticsearch": "ok" if es_ok else "down"}
    if redis_ok and es_ok:
        return json_response({"status": "ready", **states})
    down = " and ".join(name for name, state in states.items() if state == "down")
    return json_response({"error": f"Not ready: {down} unavailable", **states}, status=503)


async def _redis_answers(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(2):
            return bool(await request.app[REDIS].ping())
    except Exception:
        return False


async def _elasticsearch_answers(request: web.Request) -> bool:
    try:
        es = request.app[ELASTICSEARCH].options(request_timeout=2, max_retries=0)
        health = await es.cluster.health()
        return health["status"] in ("green", "yellow")
    except Exception:
        return False


OPENAPI_FILE = Path(__file__).with_name("openapi.json")
OPENAPI_DOCUMENT = OPENAPI_FILE.read_bytes()  # read once, at import: it ships with the package and never changes


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API (public: it holds no data)."""
    return raw_json_response(OPENAPI_DOCUMENT)


@routes.post("/api/v1/spaces/{spaceId:[^/]+}/jobs")
@requires("jobs:create")
async def create_jobs(request: web.Request) -> web.Response:
    jobs, as_array = parse_new_jobs(await read_body(request))
    created = await request.app[JOBS].create(caller(request).space_id, jobs)
    return json_response(created if as_array else created[0], status=201)


@routes.get("/api/v1/spaces/{spaceId:[^/]+}/jobs")
@requires("jobs:read")
async def list_jobs(request: web.Request) -> web.Response:
    params = parse_list_jobs(request.query)
    jobs = await request.app[JOBS].list(caller(request).space_id, params.status, params.limit, params.offset)
    return json_response(jobs)


@routes.get("/api/v1/jobs/{jobId:[^/]+}")
@requires("jobs:read")
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[JOBS].get(caller(request).space_id, job_id_of(request))
    return json_response(job)


@routes.get("/api/v1/jobs/{jobId:[^/]+}/progress")
@requires("jobs:read:progress", "jobs:read")
async def get_progress(request: web.Request) -> web.Response:
    progress = await request.app[JOBS].get_progress(caller(request).space_id, job_id_of(request))
    return json_response(progress)


@routes.post("/api/v1/jobs/{jobId:[^/]+}/progress")
@requires("jobs:progress")
async def report_progress(request: web.Request) -> web.Response:
    progress = parse_progress(await read_body(request, MEDIUM_BODY_BYTES))
    record = await request.app[JOBS].set_progress(caller(request).space_id, job_id_of(request), progress)
    return json_response(record)


@routes.get("/api/v1/jobs/{jobId:[^/]+}/logs")
@requires("jobs:read")
async def read_logs(request: web.Request) -> web.Response:
    query = parse_log_query(request.query)
    page = await request.app[LOGS].read(caller(request).space_id, job_id_of(request), query)
    return json_response(page)


@routes.get("/api/v1/spaces/{spaceId:[^/]+}/logs")
@requires("jobs:read")
async def search_space_logs(request: web.Request) -> web.Response:
    """Matching lines across every job of the space, newest first."""
    settings = request.app[SETTINGS]
    query = parse_space_log_query(
        request.query, now_ms(), settings.space_search_default_days, settings.space_search_max_days
    )
    return json_response(await request.app[LOGS].search_space(caller(request).space_id, query))


@routes.get("/api/v1/jobs/{jobId:[^/]+}/logs/export")
@requires("jobs:read")
async def export_logs(request: web.Request) -> web.StreamResponse:
    """Every visible line of the job, ascending, as a chunked download (constant memory: a batch at a time)."""
    export = parse_export_query(request.query)
    query = LogQuery("after", 0, LOGS_LIMIT_MAX, export.levels, export.text)
    job_id = job_id_of(request)
    batches = aiter(request.app[LOGS].export(caller(request).space_id, job_id, query))
    first = await anext(batches, None)  # a missing job or a store failure still answers JSON with its status
    content_type, suffix = EXPORT_TYPES[export.format]
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{job_id}.{suffix}"',
            "X-Request-Id": request[REQUEST_ID],  # the middleware's would come too late: headers leave now
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if first is not None:
            await response.write(export_chunk(first, export.format))
            async for batch in batches:
                await response.write(export_chunk(batch, export.format))
    except Exception as exc:
        # Too late for an error body: cut the connection, so the client sees an incomplete download rather than
        # a complete-looking one (a clean end would send the closing chunk).
        log.warning("export of job %s cut: %s", job_id, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


EXPORT_TYPES = {"ndjson": ("application/x-ndjson", "ndjson"), "text": ("text/plain; charset=utf-8", "log")}


@routes.post("/api/v1/jobs/{jobId:[^/]+}/logs")
@requires("jobs:log")
async def append_logs(request: web.Request) -> web.Response:
    idempotency_key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    answer = await request.app[LOGS].append(
        caller(request).space_id,
        job_id_of(request),
        await read_body(request),
        request.content_type,
        idempotency_key,
    )
    return raw_json_response(answer)


@routes.post("/api/v1/spaces/{spaceId:[^/]+}/jobs/poll")
@requires("jobs:poll")
async def poll_jobs(request: web.Request) -> web.Response:
    poll = parse_poll(await read_body(request, SMALL_BODY_BYTES))
    return json_response({"jobs": await request.app[LIFECYCLE].poll(caller(request).space_id, poll)})


def _space_and_job(request: web.Request) -> tuple[str, str]:
    return caller(request).space_id, job_id_of(request)


@routes.post("/api/v1/jobs/{jobId:[^/]+}/claim")
@requires("jobs:poll")
async def claim_job(request: web.Request) -> web.Response:
    return json_response(await request.app[LIFECYCLE].claim(*_space_and_job(request)))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/ack")
@requires("jobs:ack")
async def ack_job(request: web.Request) -> web.Response:
    return json_response(await request.app[LIFECYCLE].ack(*_space_and_job(request)))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/keepalive")
@requires("jobs:keepalive")
async def keepalive_job(request: web.Request) -> web.Response:
    return json_response(await request.app[LIFECYCLE].keepalive(*_space_and_job(request)))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/checkpoint")
@requires("jobs:event")
async def checkpoint_job(request: web.Request) -> web.Response:
    data = parse_checkpoint(await read_body(request, MEDIUM_BODY_BYTES))
    return json_response(await request.app[LIFECYCLE].checkpoint(*_space_and_job(request), data))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/event")
@requires("jobs:event")
async def record_event(request: web.Request) -> web.Response:
    kind, data = parse_event(await read_body(request, MEDIUM_BODY_BYTES))
    return json_response(await request.app[LIFECYCLE].event(*_space_and_job(request), kind, data))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/complete")
@requires("jobs:complete")
async def complete_job(request: web.Request) -> web.Response:
    result = parse_complete(await read_body(request, MEDIUM_BODY_BYTES))
    return json_response(await request.app[LIFECYCLE].complete(*_space_and_job(request), result))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/fail")
@requires("jobs:fail")
async def fail_job(request: web.Request) -> web.Response:
    error = parse_fail(await read_body(request, MEDIUM_BODY_BYTES))
    return json_response(await request.app[LIFECYCLE].fail(*_space_and_job(request), error))


@routes.post("/api/v1/jobs/{jobId:[^/]+}/kill")
@requires("jobs:kill")
async def kill_job(request: web.Request) -> web.Response:
    reason = parse_kill(await read_body(request, SMALL_BODY_BYTES))
    return json_response(await request.app[LIFECYCLE].kill(*_space_and_job(request), reason))
