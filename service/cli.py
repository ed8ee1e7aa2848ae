"""The ``joblens`` command: serve, spaces, keys, stack."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.app import create_app, new_event_loop, redis_client
from service.domain.scopes import parse_scopes
from service.observability import configure_json_logging
from service.settings import Settings, SettingsError
from service.stores.redis_api_keys import ApiKeyStore

log = logging.getLogger(__name__)
# SIGTERM/SIGINT: how long the requests in flight (a body still uploading included) may take to finish; as long
# as the default JOBLENS_BODY_TIMEOUT_S, so an upload that began just before the signal is not cut short.
SHUTDOWN_GRACE_S = 30.0
# Then: for a response still being written, and for a handler cancelled after the grace period, to wind up.
SHUTDOWN_FINAL_TIMEOUT_S = 5.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Nothing (or not Redis) answers at the URL, or it refuses our credentials: one line for a person, not a traceback.
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, InvalidResponse)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except SettingsError as exc:
        print(f"joblens: configuration error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="joblens", description="Job metadata, progress and logs service")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (default JOBLENS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default JOBLENS_PORT or 8080)")
    serve.set_defaults(run=_serve)

    spaces = commands.add_parser("spaces", help="administer spaces").add_subparsers(title="spaces commands")
    create_space = spaces.add_parser("create", help="create a space and print its id")
    create_space.add_argument("name")
    create_space.set_defaults(run=_admin(_create_space))
    spaces.add_parser("list", help="list spaces as JSON lines").set_defaults(run=_admin(_list_spaces))

    keys = commands.add_parser("keys", help="administer API keys").add_subparsers(title="keys commands")
    create_key = keys.add_parser("create", help="create an API key and print it (shown once)")
    create_key.add_argument("--space", required=True, help="space id")
    create_key.add_argument("--scopes", required=True, help="comma-separated scopes, e.g. jobs:read,jobs:create")
    create_key.add_argument("--name", default="", help="a label for the key")
    create_key.set_defaults(run=_admin(_create_key))
    list_keys = keys.add_parser("list", help="list a space's keys as JSON lines (never the keys themselves)")
    list_keys.add_argument("--space", required=True)
    list_keys.set_defaults(run=_admin(_list_keys))
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_admin(_revoke_key))

    try:
        from service.stack import add_stack_commands
    except ImportError:  # the stack manager ships with the source tree, not with slim installs
        pass
    else:
        add_stack_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    overrides: dict[str, Any] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = replace(settings, **overrides)
    settings.validate()
    configure_json_logging()
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
            loop_runner.run(serve_until_signalled(create_app(settings), settings.host, settings.port))
    except KeyboardInterrupt:  # Ctrl-C while still starting (connecting to Redis and Elasticsearch)
        return 130
    return 0


async def serve_until_signalled(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully:

    1. close the listening socket: new connections are refused at once;
    2. close idle keep-alive connections and let the requests in flight finish — also those whose body is still
       arriving — for up to ``SHUTDOWN_GRACE_S``; their responses say ``Connection: close``;
    3. close what is left (a handler still running is cancelled) and run the app's cleanup contexts, which close
       the Redis and Elasticsearch clients and flush the access log.

    A signal during start-up (before the socket listens) keeps its default effect: nothing is in flight yet.
    """
    in_flight = InFlight()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_FINAL_TIMEOUT_S)
    await runner.setup()
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


AdminCommand = Callable[[ApiKeyStore, argparse.Namespace], Awaitable[int]]


def _admin(command: AdminCommand) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = Settings.from_env()

        async def with_store() -> int:
            client = redis_client(settings)
            try:
                return await command(ApiKeyStore(client), args)
            finally:
                await client.aclose()

        try:
            return asyncio.run(with_store())
        except REDIS_UNREACHABLE as exc:
            print(f"joblens: {unreachable_message(settings.redis_url, exc)}", file=sys.stderr)
            return 1

    return run


def unreachable_message(redis_url: str, exc: Exception) -> str:
    """``cannot reach Redis at <url> (<reason>)``, without the URL's credentials (user info, query)."""
    parts = urlsplit(redis_url)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    if parts.password:
        reason = reason.replace(parts.password, "***")
    return f"cannot reach Redis at {shown} ({reason})"


async def _create_space(store: ApiKeyStore, args: argparse.Namespace) -> int:
    space = await store.create_space(args.name)
    print(space["id"])
    return 0


async def _list_spaces(store: ApiKeyStore, args: argparse.Namespace) -> int:
    for space in await store.list_spaces():
        print(orjson.dumps(space).decode())
    return 0


async def _create_key(store: ApiKeyStore, args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        print(f"joblens: --scopes: {exc}", file=sys.stderr)
        return 2
    if not await store.space_exists(args.space):
        print(f"joblens: no space {args.space!r}; create one with `joblens spaces create NAME`", file=sys.stderr)
        return 1
    api_key, record = await store.create_key(args.space, scopes, args.name)
    print(api_key)
    print(f"key id {record['keyId']} (the key is shown only this once)", file=sys.stderr)
    return 0


async def _list_keys(store: ApiKeyStore, args: argparse.Namespace) -> int:
    for record in await store.list_keys(args.space):
        print(orjson.dumps(record).decode())
    return 0


async def _revoke_key(store: ApiKeyStore, args: argparse.Namespace) -> int:
    if not await store.revoke_key(args.key_id):
        print(f"joblens: no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
