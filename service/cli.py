"""The ``joblens`` command: serve, spaces, keys, stack; and the terminal client (jobs, progress, logs, search),
which lives in `joblens_client.terminal` and uses only the public HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

from devstack.commands import add_stack_commands
from joblens_client.terminal import add_terminal_commands
from service.app import DependencyUnreachable, create_app, elasticsearch_client, new_event_loop, redis_client
from service.domain.scopes import parse_scopes
from service.observability import Metrics, configure_json_logging
from service.server import (
    Supervisor,
    WorkersFailing,
    check_port_free,
    die_with_supervisor,
    report_listening,
    serve_until_signalled,
)
from service.services.indices import IndexUpgrader
from service.services.retention import UNLIMITED, RetentionReport, retention_on, retention_service
from service.settings import Settings, SettingsError
from service.stores.es_logs import LogStore
from service.stores.redis_api_keys import ApiKeyStore
from service.stores.redis_cache import ReadCache
from service.stores.redis_jobs import JobStore

# Nothing (or not Redis) answers at the URL, or it refuses our credentials: one line for a person, not a traceback.
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, InvalidResponse)
# Query parameters of a store URL whose values are credentials (redis://host/0?password=…).
SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)


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
    serve.add_argument(
        "--workers", type=int, help="processes serving the port (default JOBLENS_WORKERS or one per CPU core)"
    )
    # Given by the supervisor to each of its workers (see service.server.Supervisor), not by people.
    serve.add_argument("--worker-of", type=int, metavar="PID", help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, metavar="FD", help=argparse.SUPPRESS)
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

    indices = commands.add_parser("indices", help="maintain the log indices").add_subparsers(title="indices commands")
    indices.add_parser(
        "upgrade", help="rewrite lines of indices made by an older template with the current search fields"
    ).set_defaults(run=_upgrade_indices)

    retention = commands.add_parser(
        "retention",
        help="remove now what is past JOBLENS_JOB_RETENTION_DAYS / JOBLENS_LOG_RETENTION_DAYS (one pass, all of it)",
    )
    retention.add_argument("--dry-run", action="store_true", help="only show what would go; change nothing")
    retention.set_defaults(run=_retention)

    add_stack_commands(commands)
    add_terminal_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    given = (("host", args.host), ("port", args.port), ("workers", args.workers))
    overrides: dict[str, Any] = {k: v for k, v in given if v is not None}
    settings = replace(settings, **overrides)
    settings.validate()
    configure_json_logging()
    if args.worker_of is not None:
        return _serve_one(settings, worker_of=args.worker_of, ready_fd=args.ready_fd)
    if settings.workers == 1:
        return _serve_one(settings)
    return _supervise(settings)


def _serve_one(settings: Settings, *, worker_of: int | None = None, ready_fd: int | None = None) -> int:
    """One process serving the port: ``joblens serve --workers 1``, or a worker of the supervisor ``worker_of``."""
    on_listening: Callable[[], None] | None = None
    if worker_of is not None:
        die_with_supervisor(worker_of)
        if ready_fd is not None:
            on_listening = functools.partial(report_listening, ready_fd)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
            serving = serve_until_signalled(
                create_app(settings),
                settings.host,
                settings.port,
                reuse_port=worker_of is not None,
                on_listening=on_listening,
            )
            loop_runner.run(serving)
    except KeyboardInterrupt:  # Ctrl-C while still starting (connecting to Redis and Elasticsearch)
        return 130
    except DependencyUnreachable as exc:
        print(f"joblens: {unreachable_message(exc.name, exc.url, exc.reason)}", file=sys.stderr)
        return 1
    return 0


def _supervise(settings: Settings) -> int:
    """``--workers N`` above 1: this process supervises N workers, each a ``joblens serve`` on the same port."""
    try:
        check_port_free(settings.host, settings.port)
    except OSError as exc:
        print(f"joblens: cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    supervisor_pid = os.getpid()

    def command(ready_fd: int) -> list[str]:
        where = ["--host", settings.host, "--port", str(settings.port)]
        supervised = ["--worker-of", str(supervisor_pid), "--ready-fd", str(ready_fd)]
        return [sys.executable, "-m", "service.cli", "serve", *where, *supervised]

    supervisor = Supervisor(settings.workers, command, address=f"http://{settings.host}:{settings.port}")
    try:
        return asyncio.run(supervisor.run())
    except WorkersFailing as exc:
        print(f"joblens: {exc}", file=sys.stderr)
        return 1


def _upgrade_indices(args: argparse.Namespace) -> int:
    """Month by month, oldest first; prints one JSON line per index (what was rewritten and skipped)."""
    settings = Settings.from_env()

    async def upgrade() -> None:
        redis, es = redis_client(settings), elasticsearch_client(settings)
        try:
            # a cache that never listens keeps nothing: every name is read from Redis
            upgrader = IndexUpgrader(LogStore(es, settings), JobStore(redis, ReadCache(redis, 0)))
            await upgrader.upgrade_all(lambda done: print(orjson.dumps(dataclasses.asdict(done)).decode(), flush=True))
        finally:
            await redis.aclose()
            await es.close()

    asyncio.run(upgrade())
    return 0


def _retention(args: argparse.Namespace) -> int:
    """One pass without limits (a person asked for it), beside the background passes: each removal is decided
    atomically where it happens, so running both at once is safe. Prints `RetentionReport.lines`."""
    settings = Settings.from_env()
    if not retention_on(settings):
        off = "joblens: retention is off: set JOBLENS_JOB_RETENTION_DAYS or JOBLENS_LOG_RETENTION_DAYS"
        print(off, file=sys.stderr)
        return 2

    async def one_pass() -> RetentionReport:
        redis, es = redis_client(settings), elasticsearch_client(settings)
        try:
            # a cache that never listens keeps nothing; the instances' caches hear of the removals from Redis
            service = retention_service(redis, ReadCache(redis, 0), es, settings, Metrics())
            assert service is not None  # retention is on
            return await service.run_pass(dry_run=args.dry_run, limits=UNLIMITED)
        finally:
            await redis.aclose()
            await es.close()

    try:
        report = asyncio.run(one_pass())
    except REDIS_UNREACHABLE as exc:
        reason = str(exc) or type(exc).__name__
        print(f"joblens: {unreachable_message('Redis', settings.redis_url, reason)}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(orjson.dumps(line).decode())
    return 0


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
            reason = str(exc) or type(exc).__name__
            print(f"joblens: {unreachable_message('Redis', settings.redis_url, reason)}", file=sys.stderr)
            return 1

    return run


def unreachable_message(name: str, url: str, reason: str) -> str:
    """``cannot reach <name> at <url> (<reason>)``, without the credentials of the URL (user info, query) — or
    of each URL, comma-separated — neither in the URL shown nor in the reason."""
    shown: list[str] = []
    secrets: list[str] = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        shown.append(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}")
        secrets += [parts.username or "", parts.password or ""]
        secrets += [value for key, value in parse_qsl(parts.query) if SECRET_QUERY_KEY.search(key)]
    reason = reason.strip().rstrip(".")
    for secret in sorted({secret for secret in secrets if len(secret) >= 3}, key=len, reverse=True):
        reason = reason.replace(secret, "***")
    return f"cannot reach {name} at {','.join(shown)} ({reason})"


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
