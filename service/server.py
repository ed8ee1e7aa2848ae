"""The HTTP server around the app: serving until SIGTERM/SIGINT and shutting down gracefully (`serve_until_signalled`,
`InFlight`), and answering what aiohttp's HTTP parser refuses in our JSON shape, with one rate-limited warning
instead of an error and a traceback per request (`JsonErrorAppRunner`, used by ``joblens serve`` and the tests)."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from service.api.context import METRICS
from service.api.middleware import MAX_HEADER_BYTES, MAX_URL_BYTES
from service.api.responses import error_response
from service.domain.clock import new_id

log = logging.getLogger(__name__)
# SIGTERM/SIGINT: how long the requests in flight (a body still uploading included) may take to finish; as long
# as the default JOBLENS_BODY_TIMEOUT_S, so an upload that began just before the signal is not cut short.
SHUTDOWN_GRACE_S = 30.0
# Then: for a response still being written, and for a handler cancelled after the grace period, to wind up.
SHUTDOWN_FINAL_TIMEOUT_S = 5.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Requests the parser refuses: at most one warning per interval and server; the others are counted.
REFUSAL_LOG_INTERVAL_S = 1.0
REFUSAL_DETAIL_CHARS = 300  # of the parser's own message (it quotes the request's bytes) in the warning


async def serve_until_signalled(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully:

    1. close the listening socket: new connections are refused at once;
    2. run the app's on_shutdown (log streams end), close idle keep-alive connections and let the requests in
       flight finish — also those whose body is still arriving — for up to ``SHUTDOWN_GRACE_S``; their responses
       say ``Connection: close``;
    3. close what is left (a handler still running is cancelled) and run the app's cleanup contexts, which close
       the Redis and Elasticsearch clients and flush the access log.

    A signal during start-up (before the socket listens) keeps its default effect: nothing is in flight yet. If
    start-up fails (`service.app.DependencyUnreachable`), what had started is closed and the exception propagates.
    """
    in_flight = InFlight()
    runner = JsonErrorAppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_FINAL_TIMEOUT_S)
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # the cleanup contexts entered before the failure (Redis when Elasticsearch failed)
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        assert runner.server is not None
        runner.server.request_handler = in_flight.track(runner.server.request_handler)
        await web.TCPSite(runner, host, port).start()
        for signum in SHUTDOWN_SIGNALS:
            loop.add_signal_handler(signum, stop.set)  # a second signal changes nothing; the grace period bounds all
        await stop.wait()
        await _drain(runner, in_flight)
    finally:
        await runner.cleanup()  # closes what is left, then the app's cleanup contexts
        for signum in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(signum)


async def _drain(runner: web.AppRunner, in_flight: InFlight) -> None:
    for site in list(runner.sites):
        await site.stop()  # closes the listening socket, not the connections
    # A request whose headers were parsed just before the signal gets a loop turn to reach its handler and so to
    # count as in flight (aiohttp's AppRunner.cleanup does the same).
    await asyncio.sleep(0)
    in_flight.draining = True
    # The app's on_shutdown, as aiohttp runs it before waiting for the handlers in flight: long-lived responses
    # (log streams) end now rather than hold the drain up for the whole grace period. `runner.cleanup` sends it
    # once more; its handlers do nothing the second time.
    await runner.app.shutdown()
    assert runner.server is not None
    idle = [connection for connection in runner.server.connections if not in_flight.running_on(connection)]
    log.info("shutting down: %d requests in flight, closing %d other connections", len(in_flight), len(idle))
    closing = asyncio.gather(*(_close_idle(connection) for connection in idle))  # each bounded by itself
    try:
        async with asyncio.timeout(SHUTDOWN_GRACE_S):
            await in_flight.finished()
    except TimeoutError:
        log.warning("%d requests still running after %gs; cancelling them", len(in_flight), SHUTDOWN_GRACE_S)
    await closing


async def _close_idle(connection: web.RequestHandler) -> None:
    # close() ends a connection that waits for its next request; shutdown() lets a response whose handler has
    # already returned finish writing, then closes the socket. (One still discarding the unread body of a request
    # answered early — aiohttp's lingering close — is cut after SHUTDOWN_FINAL_TIMEOUT_S.)
    connection.close()
    await connection.shutdown(SHUTDOWN_FINAL_TIMEOUT_S)


RequestHandlerFunction = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class InFlight:
    """The connections whose request is being handled, to wait for them at shutdown and close the others.

    Why we count ourselves: aiohttp's own graceful shutdown (``run_app``, ``AppRunner.cleanup``) starts with
    ``close()`` on every connection, and a closed connection discards the bytes that still arrive — a request
    whose body is still uploading can then only fail (408 after ``body_timeout_s``) while it holds up the exit.
    aiohttp (3.14) tells neither whether a connection is running a request nor when the request ends, so we wrap
    the server's request handler, which sees every request from before the ``Expect`` check to its response.
    """

    def __init__(self) -> None:
        self._connections: set[web.RequestHandler] = set()  # aiohttp runs one request at a time per connection
        self._none = asyncio.Event()
        self._none.set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._connections)

    def running_on(self, connection: web.RequestHandler) -> bool:
        return connection in self._connections

    async def finished(self) -> None:
        await self._none.wait()

    def track(self, handler: RequestHandlerFunction) -> RequestHandlerFunction:
        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            connection = request.protocol
            self._connections.add(connection)
            self._none.clear()
            response: web.StreamResponse | None = None
            try:
                response = await handler(request)
                return response
            except web.HTTPException as exc:  # redirects leave the middlewares as exceptions
                response = exc
                raise
            finally:
                self._connections.discard(connection)
                if not self._connections:
                    self._none.set()
                if self.draining and response is not None:
                    response.force_close()  # `Connection: close`: no further request on this connection

        return tracked


# What aiohttp's parser refuses never reaches the app (its middlewares answer everything else in JSON): aiohttp
# answers it from `RequestHandler.handle_error`, in plain text, after logging an error with a traceback — one per
# request, for any client. aiohttp (3.14) has no setting for either (aio-libs/aiohttp#3287), so we override that
# method in a subclass, which needs the server to create our subclass for each connection and a runner to create
# that server. The private parts relied on, each small: `AppRunner._make_server` (the hook a runner builds its
# server in; we let aiohttp build its own and take over its configuration), `Server._kwargs` and `Server._loop`
# (what aiohttp's `Server.__call__` builds a RequestHandler from), and `handle_error`'s arguments (status 400 and
# the parser's `HttpProcessingError` for a refused request).


class RefusalLog:
    """The warnings about refused requests: the first at once, then at most one per ``interval_s`` — a line
    counting those refused meanwhile, written when the interval ends — so that no client can flood the log."""

    def __init__(self, count: Callable[[int], None] | None = None, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._count = count
        self._quiet_until = 0.0  # loop time
        self._suppressed = 0
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, remote: str | None, status: int, message: str, detail: str) -> None:
        if self._count is not None:
            self._count(status)
        loop = asyncio.get_running_loop()
        if loop.time() < self._quiet_until:
            self._suppressed += 1
            if self._timer is None:
                self._timer = loop.call_at(self._quiet_until, self.flush)
            return
        self._quiet_until = loop.time() + self.interval_s
        # The parser's message quotes the request's bytes: the JSON log formatter masks any API key in them.
        log.warning(
            "refused a request the HTTP parser could not accept, from %s: %d %s (%s)", remote, status, message, detail
        )

    def flush(self) -> None:
        """Write the count of the refusals not logged yet, if any (at the end of an interval, and at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._suppressed:
            log.warning(
                "refused %d more requests the HTTP parser could not accept in the last %gs (not logged one by one)",
                self._suppressed,
                self.interval_s,
            )
            self._suppressed = 0
            self._quiet_until = asyncio.get_running_loop().time() + self.interval_s


# llhttp's messages: "<reason>:\n\n  <the bytes of the line>\n  <a caret under the offending byte>"; a bad request
# line's are prefixed with "Bad status line:\n  ". Only the reason (llhttp's own text) is shown to the client.
_PARSER_MESSAGE = re.compile(r"(?:Bad status line:\n  )?(?P<reason>[^\n]{1,100}):\n\n  ")
_PLAIN_REASON = re.compile(r"[A-Za-z][A-Za-z0-9 '`,:/-]{0,99}")


def refusal(exc: HttpProcessingError, handler: web.RequestHandler) -> tuple[int, str]:
    """The status and the message of our answer to a request the parser refused with ``exc``."""
    if isinstance(exc, LineTooLong):
        # the C parser measures the URL against max_line_size, a header line against max_field_size (the
        # app's PARSER_MAX_* ceilings): the limit it names tells which; the message names the API's own limits
        limit = exc.args[1] if len(exc.args) > 1 else None
        if handler.max_field_size != handler.max_line_size:
            if limit == handler.max_field_size:
                return 431, f"Request header too large: at most {MAX_HEADER_BYTES} bytes"
            if limit == handler.max_line_size:
                return 414, f"Request URL too long: at most {MAX_URL_BYTES} bytes"
        return 400, "Request line or header too long"
    if exc.message == "Too many headers received":
        return 431, f"Too many request headers: at most {handler.max_headers}"
    if isinstance(exc, BadHttpMethod) and exc.message == "Received HTTPS traffic on an HTTP port":
        return 400, "HTTPS sent to an HTTP port"
    if isinstance(exc, BadStatusLine):  # BadHttpMethod included
        what = "Malformed request line"
    elif isinstance(exc, InvalidURLError):
        what = "Malformed request URL"
    elif isinstance(exc, InvalidHeader):
        what = "Malformed request header"
    elif isinstance(exc, PayloadEncodingError):
        what = "Malformed request body"
    else:
        what = "Malformed request"
    matched = _PARSER_MESSAGE.match(exc.message)
    reason = (matched["reason"] if matched else exc.message).strip().rstrip(".")
    # a reason that is not plain text may be the client's bytes (the pure-Python parser quotes them): left out
    return 400, f"{what}: {reason}" if _PLAIN_REASON.fullmatch(reason) else what


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, but answering its own errors in JSON and logging a refused request as a
    rate-limited warning without a traceback (a 500 keeps aiohttp's error log line, traceback included)."""

    __slots__ = ("_refusals",)

    def __init__(self, manager: web.Server, *, refusals: RefusalLog, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._refusals = refusals

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 400 and isinstance(exc, HttpProcessingError):  # what the parser refused
            status, text = refusal(exc, self)
            detail = " ".join(exc.message.split())[:REFUSAL_DETAIL_CHARS]
            self._refusals.refused(request.remote, status, text, detail)
        else:  # a handler's exception that escaped the middlewares (500), or a timeout (504): a bug of ours
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            text = "Internal server error" if status == 500 else HTTPStatus(status).phrase
        if request.writer.output_size > 0:  # as aiohttp: a response was already sent; the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        # a new request id, as the middlewares give every answer (the request's own was not read)
        response = error_response(status, text, {"Connection": "close", "X-Request-Id": new_id()})
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """aiohttp's low-level server, whose connections are `JsonErrorRequestHandler` sharing one `RefusalLog`."""

    def __init__(self, handler: RequestHandlerFunction, *, refusals: RefusalLog, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.refusals = refusals

    def __call__(self) -> web.RequestHandler:
        # as aiohttp's Server.__call__ (without its fallback for invalid handler_args: create_app's are valid)
        return JsonErrorRequestHandler(self, loop=self._loop, refusals=self.refusals, **self._kwargs)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's signature)
        self.refusals.flush()
        await super().shutdown(timeout)


class JsonErrorAppRunner(web.AppRunner):
    """An `AppRunner` whose server is a `JsonErrorServer`; refusals are counted in the app's metrics."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's start-up; built from the app's handler_args
        metrics = self.app.get(METRICS)
        count = metrics.count_refused if metrics is not None else None
        return JsonErrorServer(
            plain.request_handler,
            refusals=RefusalLog(count),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )
