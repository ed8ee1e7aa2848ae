"""`EsHttp`, the lean HTTP/1.1 path of the hot reads to the client's own Elasticsearch nodes: answers and errors as
`AsyncElasticsearch` gives them, a dead node beside a live one, kept-alive connections closed under it, a request
cancelled or timed out while its answer is on its way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import elastic_transport
import orjson
import pytest
from elasticsearch import ApiError, AsyncElasticsearch, BadRequestError, NotFoundError

from devstack.ports import LOOPBACK, free_port
from service.app import elasticsearch_client
from service.settings import Settings
from service.stores.es_http import EsHttp
from tests.helpers import eventually
from tests.servers import held_requests

DOCS = 300  # enough for an answer of several socket reads
MATCH_ALL = orjson.dumps({"query": {"match_all": {}}})
FIRST_THREE = orjson.dumps({"query": {"range": {"n": {"lte": 3}}}, "sort": [{"n": "asc"}], "size": 10})
EXPECTED_FIRST_THREE = {"hits": {"hits": [{"_source": {"n": n, "text": f"doc {n}"}} for n in (1, 2, 3)]}}


@pytest.fixture
async def index(es: AsyncElasticsearch, settings: Settings) -> str:
    """An index of the test's own (the `es` fixture deletes it) holding docs 1…DOCS, searchable."""
    name = f"{settings.index_prefix}-lean"
    await es.indices.create(index=name, settings={"number_of_replicas": settings.index_replicas})
    operations: list[dict[str, Any]] = []
    for n in range(1, DOCS + 1):
        operations += [{"index": {"_index": name, "_id": str(n)}}, {"n": n, "text": f"doc {n}"}]
    response = await es.bulk(operations=operations, refresh=True)
    assert not response["errors"]
    return name


def first_three(index: str) -> str:
    return f"/{index}/_search?filter_path=hits.hits._source"


@contextlib.asynccontextmanager
async def lean_path(settings: Settings, *urls: str, timeout_s: float = 5.0) -> AsyncIterator[tuple[Any, EsHttp]]:
    """A client configured as the service configures it, for these node URLs, and an `EsHttp` over its nodes."""
    client = elasticsearch_client(replace(settings, elasticsearch_urls=urls))
    http = EsHttp(client, timeout_s)
    try:
        yield client, http
    finally:
        await http.close()
        await client.close()


class TcpProxy:
    """Forwards loopback TCP connections to Elasticsearch byte for byte; counts them, and can cut every one of
    them while it goes on accepting new ones (what a node restarted behind a kept-alive connection looks like)."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._connected, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut()
        await self._server.wait_closed()

    async def cut(self) -> None:
        """Close every connection, both ways."""
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def test_a_post_returns_the_parsed_answer_as_the_client_gives_it(
    es: AsyncElasticsearch, settings: Settings, index: str
) -> None:
    async with lean_path(settings, settings.elasticsearch_urls[0]) as (_, http):
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
        everything = orjson.dumps({"query": {"match_all": {}}, "sort": [{"n": "asc"}], "size": DOCS})
        answer = await http.post(f"/{index}/_search?filter_path=hits.hits._source", everything)
        by_client = await es.search(
            index=index, query={"match_all": {}}, sort=[{"n": "asc"}], size=DOCS, filter_path="hits.hits._source"
        )
        assert answer == by_client.body
        assert [hit["_source"]["n"] for hit in answer["hits"]["hits"]] == list(range(1, DOCS + 1))
        by_id = await http.post(f"/{index}/_mget?filter_path=docs.found,docs._source", b'{"ids":["2","nope"]}')
        assert by_id == {"docs": [{"found": True, "_source": {"n": 2, "text": "doc 2"}}, {"found": False}]}


@pytest.mark.parametrize(
    ("index_name", "query", "error_class", "status"),
    [
        ("{prefix}-absent", {"match_all": {}}, NotFoundError, 404),
        ("{index}", {"no_such_query": {}}, BadRequestError, 400),
    ],
)
async def test_an_error_answer_raises_what_the_client_raises(
    es: AsyncElasticsearch,
    settings: Settings,
    index: str,
    index_name: str,
    query: dict[str, Any],
    error_class: type[ApiError],
    status: int,
) -> None:
    searched = index_name.format(prefix=settings.index_prefix, index=index)
    async with lean_path(settings, settings.elasticsearch_urls[0]) as (client, http):
        with pytest.raises(error_class) as lean:
            await http.post(f"/{searched}/_search", orjson.dumps({"query": query}))
        with pytest.raises(error_class) as official:
            await es.search(index=searched, query=query)
        assert type(lean.value) is type(official.value)
        assert lean.value.meta.status == official.value.meta.status == status
        assert lean.value.message == official.value.message
        assert lean.value.body == official.value.body
        assert str(lean.value) == str(official.value)
        [node] = client.transport.node_pool.all()
        assert node.config not in client.transport.node_pool._dead_consecutive_failures  # an answer: not marked dead
        # the error was read whole: the next request on the kept-alive connection gets its own answer
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE


async def test_a_node_refusing_connections_is_marked_dead_and_requests_go_to_the_live_one(
    settings: Settings, index: str
) -> None:
    dead_port = free_port()  # nothing listens there
    async with lean_path(settings, f"http://{LOOPBACK}:{dead_port}", settings.elasticsearch_urls[0]) as (client, http):
        for _ in range(12):
            assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
        pool = client.transport.node_pool
        [dead] = [node for node in pool.all() if node.port == dead_port]
        [live] = [node for node in pool.all() if node.port != dead_port]
        failures = pool._dead_consecutive_failures
        assert failures.get(dead.config, 0) >= 1  # it was tried, failed, and was marked dead
        assert live.config not in failures
    async with lean_path(settings, f"http://{LOOPBACK}:{dead_port}") as (_, alone):
        with pytest.raises(elastic_transport.ConnectionError):
            await alone.post(first_three(index), FIRST_THREE)


async def test_kept_alive_connections_closed_by_the_server_are_replaced_by_a_fresh_one(
    settings: Settings, index: str
) -> None:
    async with TcpProxy(settings.elasticsearch_urls[0]) as proxy, lean_path(settings, proxy.url) as (client, http):
        answers = await asyncio.gather(*(http.post(first_three(index), FIRST_THREE) for _ in range(5)))
        assert answers == [EXPECTED_FIRST_THREE] * 5
        assert proxy.accepted == 5
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
        assert proxy.accepted == 5  # kept alive: reused
        await proxy.cut()  # all five kept-alive connections are closed now (more than the retries of a request)
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
        assert proxy.accepted == 6  # on a fresh connection
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
        assert proxy.accepted == 6  # which was kept in turn
        [node] = client.transport.node_pool.all()
        assert node.config not in client.transport.node_pool._dead_consecutive_failures  # the node did nothing wrong
        await proxy.cut()
        await asyncio.gather(*(http.post(first_three(index), FIRST_THREE) for _ in range(2)))
        assert proxy.accepted == 8


async def test_a_request_cancelled_while_waiting_does_not_leave_its_connection_to_the_next(
    settings: Settings, index: str
) -> None:
    count_target = f"/{index}/_count?filter_path=count"
    async with (
        held_requests(settings.elasticsearch_urls[0], "/_search") as proxy,
        lean_path(settings, proxy.url) as (_, http),
    ):
        assert await http.post(count_target, MATCH_ALL) == {"count": DOCS}  # one kept-alive connection
        waiting = asyncio.create_task(http.post(first_three(index), FIRST_THREE))  # takes that connection
        await eventually(proxy.held.is_set, "the search to reach the proxy")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        proxy.release.set()
        await eventually(
            lambda: any("/_search" in record.path_qs for record in proxy.records), "the search to be answered"
        )
        # the search's answer went to a connection nobody reads: the next request gets its own
        for _ in range(3):
            assert await http.post(count_target, MATCH_ALL) == {"count": DOCS}


async def test_a_request_without_an_answer_in_time_raises_connection_timeout(settings: Settings, index: str) -> None:
    count_target = f"/{index}/_count?filter_path=count"
    async with (
        held_requests(settings.elasticsearch_urls[0], "/_search") as proxy,
        lean_path(settings, proxy.url, timeout_s=0.2) as (_, http),
    ):
        assert await http.post(count_target, MATCH_ALL) == {"count": DOCS}
        with pytest.raises(elastic_transport.ConnectionTimeout):  # the instance's timeout
            await http.post(first_three(index), FIRST_THREE)
        assert proxy.held.is_set()  # it did reach the node's side: the answer was what took too long
        with pytest.raises(elastic_transport.ConnectionTimeout):  # a request's own
            await http.post(first_three(index), FIRST_THREE, timeout_s=0.05)
        proxy.release.set()
        await eventually(
            lambda: sum("/_search" in record.path_qs for record in proxy.records) == 2, "the searches to be answered"
        )
        # the late answers went to connections nobody reads
        assert await http.post(count_target, MATCH_ALL) == {"count": DOCS}
        assert await http.post(first_three(index), FIRST_THREE) == EXPECTED_FIRST_THREE
