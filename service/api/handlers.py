"""HTTP handlers: parse → authorize → one service or store call → JSON. Nothing else lives here."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.api.auth import caller, requires
from service.api.context import ELASTICSEARCH, JOBS, LOGS, REDIS
from service.api.responses import error_response, json_response, raw_json_response
from service.domain.logs import parse_log_query
from service.domain.validation import parse_list_jobs, parse_new_jobs, parse_progress

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


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


@routes.post("/api/v1/spaces/{spaceId}/jobs")
@requires("jobs:create")
async def create_jobs(request: web.Request) -> web.Response:
    jobs, as_array = parse_new_jobs(await request.read())
    created = await request.app[JOBS].create(caller(request).space_id, jobs)
    return json_response(created if as_array else created[0], status=201)


@routes.get("/api/v1/spaces/{spaceId}/jobs")
@requires("jobs:read")
async def list_jobs(request: web.Request) -> web.Response:
    params = parse_list_jobs(request.query)
    jobs = await request.app[JOBS].list(caller(request).space_id, params.status, params.limit, params.offset)
    return json_response(jobs)


@routes.get("/api/v1/jobs/{jobId}")
@requires("jobs:read")
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[JOBS].get(caller(request).space_id, request.match_info["jobId"])
    return json_response(job)


@routes.get("/api/v1/jobs/{jobId}/progress")
@requires("jobs:read:progress", "jobs:read")
async def get_progress(request: web.Request) -> web.Response:
    progress = await request.app[JOBS].get_progress(caller(request).space_id, request.match_info["jobId"])
    return json_response(progress)


@routes.post("/api/v1/jobs/{jobId}/progress")
@requires("jobs:progress")
async def report_progress(request: web.Request) -> web.Response:
    progress = parse_progress(await request.read())
    record = await request.app[JOBS].set_progress(caller(request).space_id, request.match_info["jobId"], progress)
    return json_response(record)


@routes.get("/api/v1/jobs/{jobId}/logs")
@requires("jobs:read")
async def read_logs(request: web.Request) -> web.Response:
    query = parse_log_query(request.query)
    page = await request.app[LOGS].read(caller(request).space_id, request.match_info["jobId"], query)
    return json_response(page)


@routes.post("/api/v1/jobs/{jobId}/logs")
@requires("jobs:log")
async def append_logs(request: web.Request) -> web.Response:
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        return error_response(400, "Idempotency-Key must be 1 to 255 characters")
    answer = await request.app[LOGS].append(
        caller(request).space_id,
        request.match_info["jobId"],
        await request.read(),
        request.content_type,
        idempotency_key,
    )
    return raw_json_response(answer)
