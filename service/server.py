"""The HTTP server around the app: serving until SIGTERM/SIGINT and shutting down gracefully (`serve_until_signalled`,
`InFlight`); answering what aiohttp's HTTP parser refuses in our JSON shape, with one rate-limited warning instead
of an error and a traceback per request (`JsonErrorAppRunner`, used by ``joblens serve`` and the tests); and
several worker processes on one port under a supervisor (`Supervisor`, ``joblens serve --workers N``)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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


async def serve_until_signalled(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully:

    1. close the listening socket: new connections are refused at once;
    2. run the app's on_shutdown (log streams end), close idle keep-alive connections and let the requests in
       flight finish — also those whose body is still arriving — for up to ``SHUTDOWN_GRACE_S``; their responses
       say ``Connection: close``;
    3. close what is left (a handler still running is cancelled) and run the app's cleanup contexts, which close
       the Redis and Elasticsearch clients and flush the access log.

    A signal during start-up (before the socket listens) keeps its default effect: nothing is in flight yet. If
    start-up fails (`service.app.DependencyUnreachable`), what had started is closed and the exception propagates.

    ``reuse_port``: the listening socket joins the others bound to the same port (SO_REUSEPORT), as each worker of
    `Supervisor` does; ``on_listening`` is called once the socket listens and the signal handlers are in place.
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
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        for signum in SHUTDOWN_SIGNALS:
            loop.add_signal_handler(signum, stop.set)  # a second signal changes nothing; the grace period bounds all
        if on_listening is not None:
            on_listening()
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


# ---- several processes on one port (`joblens serve --workers N`) --------------------------------------------------
#
# Each worker is a whole `joblens serve` of its own (serve_until_signalled, unchanged) whose listening socket is
# bound with SO_REUSEPORT: the kernel spreads new connections over the workers' sockets by a hash of each
# connection's addresses. Why not one socket shared by pre-forked workers: every worker's event loop would be woken
# for each new connection and the first to call accept() takes every connection waiting (asyncio accepts in a
# loop), so keep-alive clients pile onto whichever worker was idle at that moment and stay there; and the supervisor
# would have to hold the socket open, so the port would keep accepting while the workers drain. With SO_REUSEPORT a
# draining worker's socket leaves the group at once and the supervisor holds no socket at all.

# A worker says its socket listens by writing this byte to the pipe the supervisor gave it (`--ready-fd`); the
# pipe's end without it means the worker exited first.
READY = b"1"
PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal a process gets when its parent dies
# A worker that exits unexpectedly is started again after a pause that doubles with each failure in a row; after
# MAX_RESTARTS in a row the supervisor stops the others and exits 1: a worker that cannot start (a store
# unreachable, a bug at start) does not start by retrying forever, and whatever runs the service sees it fail.
RESTART_PAUSE_S = 0.25
RESTART_PAUSE_MAX_S = 4.0
MAX_RESTARTS = 5
# A worker that listened this long had recovered: its failures in a row count from 0 again.
WORKER_STABLE_S = 30.0
# After SIGTERM every worker bounds its own exit (the drain, the final timeout, the background duties' stop); one
# still running after this is killed: a bug, never the normal path.
WORKERS_STOP_TIMEOUT_S = 120.0
# The exits a shutdown explains: a clean one, and a worker still starting when it got the SIGTERM we forwarded
# (default action) or a terminal's Ctrl-C, which reaches the whole process group (KeyboardInterrupt: 130).
SHUTDOWN_EXITS = frozenset({0, -signal.SIGTERM, -signal.SIGINT, 130})


class WorkersFailing(Exception):
    """The supervisor gave up (a worker could not start, or kept exiting) and stopped the other workers."""


def check_port_free(host: str, port: int) -> None:
    """Raise `OSError` if something listens on ``host:port`` already.

    Workers bind with SO_REUSEPORT, which lets a socket join any other bound with it by the same user: a second
    ``joblens serve`` on the port would share its connections instead of failing. A bind without SO_REUSEPORT
    fails on any listener (with SO_REUSEADDR, as asyncio binds, connections in TIME_WAIT do not count)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, address in {(family, kind, proto, address) for family, kind, proto, _, address in infos}:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio binds
            probe.bind(address)


def die_with_supervisor(supervisor_pid: int) -> None:
    """Have the kernel SIGKILL this worker when its supervisor dies (Linux), so that no worker outlives it holding
    the port: a supervisor killed outright (SIGKILL, the OOM killer) takes its workers along, as one process would
    go. Exit at once if the supervisor is gone already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != supervisor_pid:  # it died before the call above took effect
        raise SystemExit(1)


def report_listening(ready_fd: int) -> None:
    """A worker's `serve_until_signalled` ``on_listening``: tell the supervisor."""
    os.write(ready_fd, READY)
    os.close(ready_fd)


def exit_status(returncode: int) -> int:
    """A child's return code as a shell shows it (128 + the signal that ended it)."""
    return returncode if returncode >= 0 else 128 - returncode


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    listening_since: float | None = None  # loop time; None if it exited before listening


class Supervisor:
    """Runs ``count`` workers serving one port and keeps them running until SIGTERM or SIGINT.

    ``command(ready_fd)`` is a worker's command line: ``joblens serve`` as a worker of this process. Only the first
    worker runs the background duties (the others get ``JOBLENS_BACKGROUND_TASKS=false``): every deadline is
    handled once whoever sweeps (each script re-checks what is due, as between instances), but the pass over every
    space and the log janitor would be repeated by each worker. While the first worker is being restarted they
    wait, for its restart pause at most; the other instances of a deployment go on meanwhile.
    """

    def __init__(self, count: int, command: Callable[[int], Sequence[str]], *, address: str) -> None:
        self._count = count
        self._command = command
        self._address = address
        self._running: set[asyncio.subprocess.Process] = set()
        self._stopping = asyncio.Event()
        self._failure: str | None = None
        self._exits: set[int] = set()  # return codes of the workers that exited during the shutdown

    async def run(self) -> int:
        """Start the workers — the first alone, so that a failure to start (a store unreachable) is told once, by
        that worker, whose exit status is then returned — and keep them running; at SIGTERM or SIGINT forward
        SIGTERM to each (each drains as one process does) and wait for all. 0 after a clean shutdown;
        `WorkersFailing` once the others are stopped, if a worker could not start or kept exiting."""
        loop = asyncio.get_running_loop()
        for signum in SHUTDOWN_SIGNALS:
            loop.add_signal_handler(signum, self._stop)
        try:
            first = await self._start(0)
            if first.listening_since is None and not self._stopping.is_set():
                return exit_status(await first.process.wait())  # its own message said why
            workers = [first]
            if not self._stopping.is_set():  # a signal during the first's start-up: the others are not started
                workers += await asyncio.gather(*(self._start(i) for i in range(1, self._count)))
            self._check_started(workers)
            slots = [asyncio.create_task(self._keep(w), name=f"joblens-worker-{w.index}") for w in workers]
            await self._stopping.wait()
            await self._wait_for(slots)
        finally:  # on an unexpected error the kernel ends the workers as this process exits (die_with_supervisor)
            for signum in SHUTDOWN_SIGNALS:
                loop.remove_signal_handler(signum)
        if self._failure is not None:
            raise WorkersFailing(self._failure)
        return 0 if self._exits <= SHUTDOWN_EXITS else 1

    def _check_started(self, workers: list[_Worker]) -> None:
        if self._stopping.is_set():
            return
        failed = [worker.index for worker in workers if worker.listening_since is None]
        if failed:
            self._fail(f"worker {failed[0]} exited while starting")
            return
        pids = [worker.process.pid for worker in workers]
        fields = {"worker_pids": pids}
        log.info("serving on %s with %d workers", self._address, len(workers), extra={"fields": fields})

    async def _start(self, index: int) -> _Worker:
        """Spawn worker ``index`` and wait until it listens or exits."""
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command(write_fd), env=self._environment(index), pass_fds=(write_fd,)
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds it now: its exit ends the pipe
        self._running.add(process)
        if self._stopping.is_set():  # a shutdown began while it was being spawned
            _signal(process, signal.SIGTERM)
        worker = _Worker(index, process)
        if await _listening(read_fd):
            worker.listening_since = asyncio.get_running_loop().time()
        return worker

    @staticmethod
    def _environment(index: int) -> dict[str, str]:
        if index == 0:
            return dict(os.environ)
        return {**os.environ, "JOBLENS_BACKGROUND_TASKS": "false"}

    async def _keep(self, worker: _Worker) -> None:
        """Wait for the worker to exit; outside a shutdown start it again after a pause, or give up."""
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                code = await worker.process.wait()
                self._running.discard(worker.process)
                if self._stopping.is_set():
                    self._exits.add(code)
                    return
                since = worker.listening_since
                if since is not None and loop.time() - since >= WORKER_STABLE_S:
                    failures = 0
                failures += 1
                if failures > MAX_RESTARTS:
                    status = exit_status(code)
                    self._fail(f"worker {worker.index} keeps exiting ({MAX_RESTARTS} restarts in a row; last {status})")
                    return
                pause_s = min(RESTART_PAUSE_S * 2 ** (failures - 1), RESTART_PAUSE_MAX_S)
                log.warning(
                    "worker %d (pid %d) exited unexpectedly (exit status %d); starting it again in %gs",
                    worker.index,
                    worker.process.pid,
                    exit_status(code),
                    pause_s,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause_s)
                if self._stopping.is_set():
                    return
                worker = await self._start(worker.index)
                if worker.listening_since is not None:
                    log.info("worker %d listening again (pid %d)", worker.index, worker.process.pid)
        except Exception as exc:  # spawning failed (say, no more processes allowed): nothing to keep
            self._fail(f"worker {worker.index} could not be started again: {exc}")

    def _stop(self) -> None:
        """Begin the shutdown (a signal, or giving up): SIGTERM to every worker."""
        self._stopping.set()
        for process in self._running:
            _signal(process, signal.SIGTERM)

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self._stop()

    async def _wait_for(self, slots: list[asyncio.Task[None]]) -> None:
        _, running = await asyncio.wait(slots, timeout=WORKERS_STOP_TIMEOUT_S)
        if running:
            log.warning("%d workers still running after %gs; killing them", len(running), WORKERS_STOP_TIMEOUT_S)
            for process in self._running:
                _signal(process, signal.SIGKILL)
            await asyncio.wait(running)


async def _listening(read_fd: int) -> bool:
    """Whether the worker at the other end of the pipe wrote `READY` (True) or exited first (False)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(read_fd, wake)
    try:
        await readable
        return os.read(read_fd, len(READY)) == READY
    finally:
        loop.remove_reader(read_fd)
        os.close(read_fd)


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    # os.kill rather than Process.send_signal: on Python 3.11 that polls the child itself first, racing asyncio's
    # child watcher for its exit status (which then reads 255).
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)
