"""Scope checks: handlers declare the scopes that admit a caller; the auth middleware found the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from service.api.context import PRINCIPAL
from service.domain.clock import is_ulid
from service.domain.errors import Forbidden, JobNotFound
from service.stores.redis_api_keys import Principal

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(*accepted: str) -> Callable[[Handler], Handler]:
    """Admit a caller holding any of ``accepted``; a ``spaceId`` in the path must be the key's own space."""

    admitted_by = frozenset(accepted)

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = request[PRINCIPAL]
            if principal.allowed.isdisjoint(admitted_by):
                raise Forbidden(f"Missing required scope: {accepted[0]}")
            space_id = request.match_info.get("spaceId")
            if space_id is not None and space_id != principal.space_id:
                raise Forbidden("This API key belongs to another space")
            return await handler(request)

        return guarded

    return decorate


def caller(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def job_id_of(request: web.Request) -> str:
    """The path's job id; anything that is not a ULID cannot name a job (and never reaches a store key)."""
    job_id = request.match_info["jobId"]
    if not is_ulid(job_id):
        raise JobNotFound()
    return job_id
