"""The one app factory: middlewares, routes, and the cleanup contexts that own every client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

from aiohttp import web
from elasticsearch import AsyncElasticsearch, OrjsonSerializer
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from service.api.context import (
    ACCESS_LOG,
    AUTHENTICATOR,
    ELASTICSEARCH,
    JOBS,
    LIFECYCLE,
    LIVE_HUB,
    LOGS,
    METRICS,
    READ_CACHE,
    REDIS,
    SETTINGS,
)
from service.api.handlers import routes
from service.api.middleware import auth_middleware, error_middleware, observe_middleware
from service.api.streams import routes as stream_routes
from service.api.ui import routes as ui_routes
from service.observability import AccessLog, Metrics
from service.services.auth import Authenticator
from service.services.background import BackgroundWorker
from service.services.lifecycle import LifecycleService
from service.services.live import LiveHub
from service.services.logs import LogService
from service.services.retention import retention_service
from service.settings import REDIS_SOCKET_TIMEOUT_S, Settings, redis_cluster_seeds
from service.stores.es_logs import LogStore
from service.stores.redis_api_keys import ApiKeyStore
from service.stores.redis_cache import ReadCache
from service.stores.redis_callbacks import CallbackStore
from service.stores.redis_jobs import JobStore
from service.stores.redis_logseq import LogSeqStore
from service.stores.redis_replication import ReplicaWait
from service.stores.redis_transitions import TransitionStore

log = logging.getLogger(__name__)
T = TypeVar("T")
# The HTTP parser's own ceilings, twice the API's limits (`middleware.MAX_URL_BYTES`, `MAX_HEADER_BYTES`), so that
# the middleware answers first, naming the header. Beyond them (or past 128 headers) the parser refuses the request,
# and `service.server` answers in the same JSON shape (414 or 431: the two must differ, the one named tells which).
PARSER_MAX_LINE_BYTES = 32 * 1024
PARSER_MAX_FIELD_BYTES = 16 * 1024


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[observe_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args={
            "max_line_size": PARSER_MAX_LINE_BYTES,
            "max_field_size": PARSER_MAX_FIELD_BYTES,
            # A connection without a complete request (idle, half-open, or trickling its headers) is closed then.
            "keepalive_timeout": settings.idle_timeout_s,
        },
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[ACCESS_LOG] = AccessLog(sys.stderr if settings.access_log else None)
    app.on_cleanup.append(_flush_access_log)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(elasticsearch_ctx)
    app.cleanup_ctx.append(live_hub_ctx)
    # aiohttp runs on_shutdown before it waits for the handlers in flight (and `service.server` as it begins to
    # drain): log streams must end then, not hold the shutdown up
    app.on_shutdown.append(_end_streams)
    if settings.background_tasks:
        app.cleanup_ctx.append(background_ctx)
    app.add_routes(routes)
    app.add_routes(stream_routes)
    app.add_routes(ui_routes)  # the web viewer's static files, at /ui/
    return app


async def _flush_access_log(app: web.Application) -> None:
    app[ACCESS_LOG].flush()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a faster loop for the same asyncio code), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def redis_client(settings: Settings) -> Redis:
    """The Redis client: standalone, or a cluster client for a `redis+cluster://` URL.

    The cluster client is typed as `Redis` for the stores: they use only what both offer (commands, scripts,
    pipelines, and transactions whose keys share one slot). The read cache and the live hub hold connections of
    their own and check which client they got (`keyspace.RedisClient`)."""
    seeds = redis_cluster_seeds(settings.redis_url)
    if seeds is not None:
        return cast(Redis, redis_cluster_client(settings.redis_url, seeds))
    # A bounded pool that makes a request wait for a free connection (redis-py's default pool refuses the 101st
    # concurrent command with "Too many connections"; a burst of reads must queue, not fail).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=2,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry_on_timeout=False,
    )
    return Redis.from_pool(pool)


def redis_cluster_client(url: str, seeds: tuple[tuple[str, int], ...]) -> RedisCluster:
    """A cluster client that starts from ``seeds`` and learns the rest of the cluster (and every later change of
    it: MOVED replies, failovers) by itself."""
    parsed = urllib.parse.urlsplit(url.split(",", 1)[0])  # the credentials come before the first seed
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=urllib.parse.unquote(parsed.username) if parsed.username else None,
        password=urllib.parse.unquote(parsed.password) if parsed.password else None,
        ssl=url.startswith("rediss+"),
        # While one shard has no primary (a failover under way) the others keep serving.
        require_full_coverage=False,
        socket_connect_timeout=2,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
    )


def elasticsearch_client(settings: Settings) -> AsyncElasticsearch:
    return AsyncElasticsearch(
        list(settings.elasticsearch_urls),
        serializers={"application/json": OrjsonSerializer()},
        request_timeout=settings.es_request_timeout_s,
        max_retries=1,
        retry_on_timeout=False,
        # A single node that restarted must be tried again soon, not after a long dead-node backoff.
        dead_node_backoff_factor=0.25,
        max_dead_node_backoff=1.0,
    )


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = redis_client(settings)
    try:
        await connect_with_retry("Redis", settings.redis_url, client.ping, settings.connect_timeout_s)
        cache = ReadCache(client, settings.read_cache_entries)
        app[METRICS].watch_read_cache(lambda: dataclasses.asdict(cache.counts))
        app[REDIS] = client
        app[READ_CACHE] = cache
        app[AUTHENTICATOR] = Authenticator(ApiKeyStore(client), settings.rate_limit_per_s)
        app[JOBS] = JobStore(client, cache)
        app[LIFECYCLE] = LifecycleService(TransitionStore(client, cache))
        async with _running(cache.listen, enabled=settings.read_cache_entries > 0, name="joblens-read-cache"):
            yield
    finally:
        await client.aclose()


async def elasticsearch_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = elasticsearch_client(settings)
    try:
        urls = ",".join(settings.elasticsearch_urls)
        with _errors_only(*ELASTIC_TRANSPORT_LOGGERS):  # its warnings (a traceback each) per failed attempt
            await connect_with_retry("Elasticsearch", urls, client.cluster.health, settings.connect_timeout_s)
        lines = LogStore(client, settings)
        try:
            await lines.install_template()
            app[ELASTICSEARCH] = client
            app[LOGS] = LogService(_log_seq_store(app), lines, app[JOBS], settings, app[METRICS])
            yield
        finally:
            await lines.close()
    finally:
        await client.close()


def _log_seq_store(app: web.Application) -> LogSeqStore:
    settings, metrics = app[SETTINGS], app[METRICS]
    wait = ReplicaWait(
        app[REDIS], settings.redis_wait_replicas, settings.redis_wait_timeout_s, metrics.log_appends_unreplicated.inc
    )
    return LogSeqStore(app[REDIS], app[READ_CACHE], wait)


async def live_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = LiveHub(app[REDIS], app[LOGS], app[JOBS], app[SETTINGS])
    app[LIVE_HUB] = hub
    try:
        async with _running(hub.listen, name="joblens-live-pubsub"):
            yield
    finally:
        hub.shut_down()
        await hub.stop()


async def _end_streams(app: web.Application) -> None:
    hub = app.get(LIVE_HUB)
    if hub is not None:
        hub.shut_down()


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    retention = retention_service(app[REDIS], app[READ_CACHE], app[ELASTICSEARCH], settings, app[METRICS])
    callbacks = CallbackStore(app[REDIS], app[READ_CACHE])
    worker = BackgroundWorker(app[LIFECYCLE], callbacks, app[LOGS], settings, retention)
    # at most a clean-up request to finish, then the deliveries in flight
    stop_timeout_s = settings.es_request_timeout_s + settings.callback_timeout_s + 5
    async with _running(worker.run, stop_timeout_s=stop_timeout_s, name="joblens-background"):
        yield


@contextlib.asynccontextmanager
async def _running(
    loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    *,
    name: str,
    enabled: bool = True,
    stop_timeout_s: float = 5.0,
) -> AsyncIterator[None]:
    """Run ``loop(stopping)`` as a task for the duration of the block; on exit set ``stopping`` and await it."""
    if not enabled:
        yield
        return
    stopping = asyncio.Event()
    task = asyncio.create_task(loop(stopping), name=name)
    try:
        yield
    finally:
        stopping.set()
        try:
            await asyncio.wait_for(task, timeout=stop_timeout_s)
        except TimeoutError:
            log.warning("%s did not stop in time; cancelled", name)


# The loggers the Elasticsearch client logs through (each record is filtered by its own logger's filters only).
ELASTIC_TRANSPORT_LOGGERS = ("elastic_transport.node", "elastic_transport.node_pool", "elastic_transport.transport")


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _errors_only(*logger_names: str) -> Iterator[None]:
    """Only errors from these loggers for the duration of the block (safe to nest: each block its own filter)."""
    loggers = [logging.getLogger(name) for name in logger_names]
    errors_only = _ErrorsOnly()
    for logger in loggers:
        logger.addFilter(errors_only)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(errors_only)


class DependencyUnreachable(RuntimeError):
    """A backing store (``name``: Redis, Elasticsearch) did not answer at ``url`` within the connect timeout.

    ``url`` is as configured (credentials included; comma-separated nodes for Elasticsearch): whoever shows it
    redacts it (`service.cli.unreachable_message`). The exception's own text leaves the URL out."""

    def __init__(self, name: str, url: str, reason: str, timeout_s: float) -> None:
        super().__init__(f"{name.lower()} did not answer within {timeout_s:g}s: {reason}")
        self.name = name
        self.url = url
        self.reason = reason
        self.timeout_s = timeout_s


async def connect_with_retry(name: str, url: str, probe: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """Call ``probe`` until it answers, or raise `DependencyUnreachable` once ``timeout_s`` has passed.

    The failed attempts are logged at debug level only: on failure the exception says it once (``joblens serve``
    prints one line), and a success after retries is logged."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.2
    attempt = 1
    while True:
        try:
            answer = await probe()
        except Exception as exc:
            reason = str(exc).strip() or type(exc).__name__
            if time.monotonic() + delay_s > deadline:
                raise DependencyUnreachable(name, url, reason, timeout_s) from exc
            log.debug("%s not reachable (attempt %d): %s; retrying in %.1fs", name, attempt, reason, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)
            attempt += 1
        else:
            if attempt > 1:
                log.info("%s answered after %d attempts", name, attempt)
            return answer
