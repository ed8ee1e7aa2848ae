"""A lean path to Elasticsearch for the hot reads (a page of a job's lines, lines by id).

Why: through `AsyncElasticsearch` a 200-line page costs the service about 0.6 ms of CPU (its API layer, the
transport, aiohttp's client session, the JSON), measured on loopback, against about 0.25 ms for the same request
written as bytes on a kept-alive connection of our own and parsed with orjson. In the service that took a log
read from about 0.8 to 0.5 ms of CPU (`python -m bench.profile search`). Here the body is serialised by the
caller, once, and the request goes on a plain HTTP/1.1 connection kept per node.

The nodes are the client's own (``es.transport.node_pool``): the same choice of node, the same dead-node marking,
backoff and resurrection, shared with every other request of the client. As the client is configured
(`service.app.elasticsearch_client`): a connection error is retried once on another node, a timeout is not, and
an answer 429/502/503/504 is retried once (then raised, as the client raises it). A kept-alive connection that
turns out closed before answering anything (the node restarted meanwhile) is retried at once on a fresh one.
Nodes reached over TLS go through the node's own client (aiohttp), with the same retries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import elastic_transport
import elasticsearch
import orjson
from elastic_transport import ApiResponseMeta, BaseAsyncNode, HttpHeaders, NodeConfig
from elasticsearch import AsyncElasticsearch
from elasticsearch.exceptions import HTTP_EXCEPTIONS

RETRIES = 1  # as `service.app.elasticsearch_client`: max_retries=1, retry_on_timeout=False
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Answers that say nothing against the node (elastic_transport's NOT_DEAD_NODE_HTTP_STATUSES); others mark it dead.
HEALTHY_NODE_STATUSES = frozenset({400, 401, 402, 403, 404, 409})
IDLE_CONNECTIONS_PER_NODE = 32
JSON_HEADERS = HttpHeaders({"content-type": "application/json", "accept": "application/json"})


class _Closed(Exception):
    """A kept-alive connection was found closed before any byte of the answer: nothing reached the node's handler
    that answered, so the request may be sent again at once."""


class _Connection:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send ``request``; the answer's status, body and whether the connection may be kept."""
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            nothing_read = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if self.reused and nothing_read:
                raise _Closed() from exc
            raise
        status = int(head[9:12])
        fields = head.lower()
        keep = b"\nconnection: close" not in fields
        if b"\ntransfer-encoding: chunked" in fields:
            return status, await self._chunked(), keep
        start = fields.find(b"\ncontent-length:")
        if start < 0:  # no length and not chunked: the body runs to the end of the connection
            return status, await self.reader.read(), False
        length = int(fields[start + 16 : fields.index(b"\r", start + 16)])
        return status, await self.reader.readexactly(length), keep

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers: the closing empty line
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop was closed: it cannot be closed through it any more
            self.writer.close()


class EsHttp:
    """POSTs of pre-serialised JSON to the client's nodes; answers parsed with orjson (see the module docstring)."""

    def __init__(self, es: AsyncElasticsearch, timeout_s: float) -> None:
        self._pool = es.transport.node_pool
        self._timeout_s = timeout_s
        self._idle: dict[str, collections.deque[_Connection]] = {}  # node base_url → kept-alive connections
        self._heads: dict[str, tuple[bytes, bytes]] = {}  # node base_url → a request's head, cut (`_request_head`)

    async def post(self, target: str, body: bytes, timeout_s: float | None = None) -> Any:
        """The parsed answer of ``POST <target>`` (a path with its query string) with ``body``; raises as
        `AsyncElasticsearch` does: `elasticsearch.ApiError` for an error answer, `elastic_transport` errors
        for a node that cannot be reached or did not answer in time."""
        status, answer, node, duration_s = await self.exchange(target, body, timeout_s)
        if status >= 300:
            raise _api_error(status, answer, node.config, duration_s)
        return orjson.loads(answer)

    async def exchange(
        self, target: str, body: bytes, timeout_s: float | None = None
    ) -> tuple[int, bytes, BaseAsyncNode, float]:
        """``POST <target>`` with its retries (see the module docstring): the answer's status and body as they came,
        the node that gave it and how long that took; raises `elastic_transport` errors as `post` does."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            node: BaseAsyncNode = self._pool.get()  # type: ignore[assignment]
            started = time.monotonic()
            try:
                status, answer = await self._send(node, target, body, timeout)
            except elastic_transport.ConnectionTimeout:
                self._pool.mark_dead(node)
                raise
            except elastic_transport.ConnectionError:
                self._pool.mark_dead(node)
                if last:
                    raise
                continue
            if 200 <= status < 300 or status in HEALTHY_NODE_STATUSES:
                self._pool.mark_live(node)
            else:
                self._pool.mark_dead(node)
            if status in RETRY_STATUSES and not last:
                continue
            return status, answer, node, time.monotonic() - started
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send(self, node: BaseAsyncNode, target: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        if node.scheme != "http":
            response = await node.perform_request(  # prefixes the node's base URL (with its path) itself
                "POST", target, body=body, headers=JSON_HEADERS, request_timeout=timeout_s
            )
            return response.meta.status, response.body
        request = self._request(node, target, body)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(node, request)
        except TimeoutError as exc:
            raise elastic_transport.ConnectionTimeout(f"no answer within {timeout_s} s", errors=(exc,)) from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise elastic_transport.ConnectionError(f"{type(exc).__name__}: {exc}", errors=(exc,)) from exc

    async def _exchange(self, node: BaseAsyncNode, request: bytes) -> tuple[int, bytes]:
        idle = self._idle.setdefault(node.base_url, collections.deque())
        while True:
            connection = idle.pop() if idle else await self._connect(node)
            done = False
            try:
                status, answer, keep = await connection.exchange(request)
                done = True
            except _Closed:
                continue  # `finally` closed it: the next one is fresh or was idle less long
            finally:
                # Only a connection whose answer was read whole can carry the next request (not one cut short by
                # an error, a timeout or the caller's cancellation).
                if done and keep and len(idle) < IDLE_CONNECTIONS_PER_NODE:
                    connection.reused = True
                    idle.append(connection)
                else:
                    connection.close()
            return status, answer

    async def _connect(self, node: BaseAsyncNode) -> _Connection:
        reader, writer = await asyncio.open_connection(node.host, node.port)
        return _Connection(reader, writer)

    def _request(self, node: BaseAsyncNode, target: str, body: bytes) -> bytes:
        head = self._heads.get(node.base_url)
        if head is None:
            head = self._heads[node.base_url] = _request_head(node)
        start, rest = head
        return b"%s%s%s%d\r\n\r\n%s" % (start, target.encode(), rest, len(body), body)

    async def close(self) -> None:
        """Close every kept-alive connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _request_head(node: BaseAsyncNode) -> tuple[bytes, bytes]:
    """A POST to this node, cut where the target and the body's length go: the node's own headers (its
    credentials, from its URL) and JSON both ways."""
    config = node.config
    lines = [f"host: {config.host}:{config.port}", "content-type: application/json", "accept: application/json"]
    lines += [f"{name}: {value}" for name, value in config.headers.items() if name.lower() not in OWN_HEADERS]
    start = b"POST " + node.path_prefix.encode()
    return start, b" HTTP/1.1\r\n" + "\r\n".join(lines).encode("latin-1") + b"\r\ncontent-length: "


OWN_HEADERS = frozenset({"host", "content-type", "accept", "content-length", "connection", "transfer-encoding"})


def _api_error(status: int, answer: bytes, node: NodeConfig, duration_s: float) -> elasticsearch.ApiError:
    """The exception `AsyncElasticsearch` raises for this answer (its class by status, the error's type as message)."""
    try:
        body: Any = orjson.loads(answer)
    except orjson.JSONDecodeError:
        body = answer.decode(errors="replace")
    message: Any = str(body)
    if isinstance(body, dict):
        error = body.get("error", message)
        message = error["type"] if isinstance(error, dict) and "type" in error else error
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=duration_s, node=node)
    error_class: type[elasticsearch.ApiError] = HTTP_EXCEPTIONS.get(status, elasticsearch.ApiError)
    return error_class(message=message, meta=meta, body=body)
