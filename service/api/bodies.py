"""Reading request bodies with a per-route size limit and a deadline (slow or half-open clients time out)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.api.context import SETTINGS
from service.domain.errors import ClientClosed, InvalidParam, RequestTimeout, TooLarge

SMALL_BODY_BYTES = 64 * 1024  # poll, kill: a few fields
MEDIUM_BODY_BYTES = 2 * 1024 * 1024  # results, errors, events, checkpoints, progress: up to 1 MiB of JSON
CHUNK_BYTES = 64 * 1024


async def read_body(request: web.Request, limit_bytes: int | None = None) -> bytes:
    """The whole body, or 413 beyond ``limit_bytes`` (default: JOBLENS_MAX_BODY_BYTES), or 408 when the client
    does not send it within JOBLENS_BODY_TIMEOUT_S."""
    settings = request.app[SETTINGS]
    limit = min(limit_bytes or settings.max_body_bytes, settings.max_body_bytes)
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"Request body too large: at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"Request body too large: at most {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"The request body was not received within {settings.body_timeout_s:g}s") from None
    except ConnectionResetError:
        raise ClientClosed("The client closed the connection before sending the whole body") from None
    except web.RequestPayloadError:  # e.g. Content-Encoding: gzip on bytes that are not gzip
        encoding = request.headers.get("Content-Encoding", "")[:50]
        raise InvalidParam(f"body could not be read as sent (Content-Encoding {encoding!r})") from None
    return b"".join(chunks)
