"""Middlewares, outermost first: observation (request id, metrics, access log) → errors → auth and rate limit."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import traceback
from typing import Any

import elastic_transport
import elasticsearch
import redis.exceptions
from aiohttp import web

from service.api.auth import Handler
from service.api.context import ACCESS_LOG, AUTHENTICATOR, METRICS, PRINCIPAL, REQUEST_ID
from service.api.responses import error_response
from service.domain.clock import new_id
from service.domain.errors import ClientClosed, DomainError, HeaderTooLarge, RateLimited, Unauthorized, UrlTooLong

log = logging.getLogger(__name__)

# A 1,024-character `q` of non-ASCII text is ~12 KiB once percent-encoded: URLs may have 16 KiB.
MAX_URL_BYTES = 16 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADERS_TOTAL_BYTES = 32 * 1024
API_PREFIX = "/api/v1/"
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

REDIS_CONNECTION_MODULE = os.path.join("redis", "asyncio", "connection.py")
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
)
ELASTICSEARCH_DOWN: tuple[type[BaseException], ...] = (
    elastic_transport.ConnectionError,
    elastic_transport.ConnectionTimeout,
    elastic_transport.TransportError,
)


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (echoed as X-Request-Id), latency histogram and one JSON access-log line per request.
    The line names the key by its id only: neither keys nor headers are ever logged."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if REQUEST_ID_PATTERN.fullmatch(given) else new_id()
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:  # redirects and the like pass through the error middleware
        status = exc.status
        exc.headers["X-Request-Id"] = request_id
        raise
    except asyncio.CancelledError:  # the client went away (with handler cancellation on)
        status = ClientClosed.status
        raise
    finally:
        elapsed_s = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        # any token is a method to HTTP: unknown ones share one label value, so clients cannot grow the metrics
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        request.app[METRICS].observe_request(route, method, status, elapsed_s)
        principal = request.get(PRINCIPAL)
        request.app[ACCESS_LOG].record(
            {
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": status,
                "latency_ms": round(elapsed_s * 1000, 2),
                "key_id": principal.key_id if principal is not None else None,
                "remote": request.remote,
            }
        )


def _a_closed_redis_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is redis-py's asyncio write to a connection that closed under it (a node killed, a failover):
    the transport's internals are gone, and the write fails with an AttributeError or TypeError instead of a
    ConnectionError (redis/redis-py#3546, #4287). It is the same outage, and answers the same 503."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(frame.filename.endswith(REDIS_CONNECTION_MODULE) for frame in frames[-3:])


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as ``{"error": ...}`` with its status; nothing internal reaches the client."""
    try:
        check_request_size(request)
        return await handler(request)
    except DomainError as exc:
        headers = {"Retry-After": str(max(1, -(-exc.retry_after_s // 1)))} if isinstance(exc, RateLimited) else None
        return error_response(exc.status, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _http_message(exc), _kept_headers(exc))
    except (AttributeError, TypeError) as exc:
        if not _a_closed_redis_connection(exc):
            log.exception("unhandled error during %s %s", request.method, request.path)
            return error_response(500, "Internal server error")
        request.app[METRICS].store_errors.labels("redis").inc()
        log.warning("redis connection closed under a write during %s %s: %r", request.method, request.path, exc)
        return error_response(503, "Redis is unavailable; retry later")
    except REDIS_DOWN as exc:
        request.app[METRICS].store_errors.labels("redis").inc()
        log.warning("redis unavailable during %s %s: %s", request.method, request.path, exc)
        return error_response(503, "Redis is unavailable; retry later")
    except elasticsearch.ApiError as exc:
        if exc.meta.status in (429, 502, 503, 504):
            request.app[METRICS].store_errors.labels("elasticsearch").inc()
            return error_response(503, "Elasticsearch is unavailable; retry later")
        log.exception("elasticsearch error during %s %s", request.method, request.path)
        return error_response(500, "Internal server error")
    except ELASTICSEARCH_DOWN as exc:
        request.app[METRICS].store_errors.labels("elasticsearch").inc()
        log.warning("elasticsearch unavailable during %s %s: %s", request.method, request.path, exc)
        return error_response(503, "Elasticsearch is unavailable; retry later")
    except Exception:
        log.exception("unhandled error during %s %s", request.method, request.path)
        return error_response(500, "Internal server error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the API key of every ``/api/v1`` call and take one token from its rate bucket."""
    if not request.path.startswith(API_PREFIX) or request.path in PUBLIC_PATHS:
        return await handler(request)
    api_key = _presented_key(request)
    if api_key is None:
        raise Unauthorized("Missing API key: send x-api-key or Authorization: Bearer")
    request[PRINCIPAL] = await request.app[AUTHENTICATOR].admit(api_key)
    return await handler(request)


def check_request_size(request: web.Request) -> None:
    """The URL and header limits (414, 431); the parser lets through more so that this can answer in JSON."""
    if len(request.raw_path) > MAX_URL_BYTES:
        raise UrlTooLong(f"Request URL too long: at most {MAX_URL_BYTES} bytes")
    total = 0
    for name, value in request.raw_headers:
        size = len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            shown = name[:64].decode(errors="replace")
            raise HeaderTooLarge(f"Request header {shown} too large: at most {MAX_HEADER_BYTES} bytes")
        total += size
    if total > MAX_HEADERS_TOTAL_BYTES:
        raise HeaderTooLarge(f"Request headers too large: at most {MAX_HEADERS_TOTAL_BYTES} bytes in all")


def _presented_key(request: web.Request) -> str | None:
    api_key = request.headers.get("x-api-key")
    if api_key:
        return api_key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _http_message(exc: web.HTTPException) -> str:
    messages: dict[int, str] = {
        404: "Not found",
        405: f"Method not allowed; use {', '.join(sorted(getattr(exc, 'allowed_methods', ())))}",
        413: "Request body too large",
    }
    return messages.get(exc.status, exc.reason)


def _kept_headers(exc: web.HTTPException) -> dict[str, Any] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None
