"""Tail reads without a refresh: an ``after`` page over acknowledged lines that are not searchable yet (between the
job's ``visible`` and ``durable`` watermarks) is read by id (a realtime ``_mget``), levels and ``q`` decided in the
service. Every such read must answer exactly what the same read answers once the lines are searchable, and must
not refresh the index (see docs/design.md, "Why tails read by id")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import elasticsearch
import pytest
from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from service.domain.clock import ms_from_iso
from service.domain.logs import LOGS_LIMIT_DEFAULT
from service.settings import Settings
from service.stores.es_logs import UNSEARCHABLE_FETCH_MAX, index_for
from service.stores.keyspace import SpaceKeys
from service.stores.redis_cache import ReadCache
from service.stores.redis_logseq import LogSeqStore
from tests.helpers import AppFactory, Tenant, create_job
from tests.logs_helpers import LEGACY_MAPPINGS, append, page, seqs

# No scheduled refresh during a test: a line becomes searchable only when a read refreshes the index.
NO_SCHEDULED_REFRESH_S = 3600

MESSAGES = [
    "[o.e.c.r.a.AllocationService] [node-1] current.health=GREEN reason=shards started",  # 0
    "GC(12) Pause Young (G1CollectForAllocation) 24M->3M(256M) 3.512ms",  # 1
    "org.elasticsearch.cluster.service.MasterService: publishing cluster state version [42]",  # 2
    "AllocationService.start ok",  # 3
    "Service 7 . start",  # 4: the tokens of Service.start, not in order
    "user=alice action=login took=15ms id=7f3a9c2e",  # 5
    "HTTPServer bound to\t[127.0.0.1:9200]",  # 6
]
LEVELS = ["info", "warn", "error", "debug", "info", "error", "fatal", "trace"]
# q → the MESSAGES it matches
MATCHES = {
    "Service": {0, 2, 3, 4},  # camelCase parts, a dotted name's part, a whole word
    "Service.start": {3},  # a dotted name whose first part is a camelCase part
    "elasticsearch.cluster": {2},  # a dotted name's inner parts
    "Collect": {1},
    "collectfor": {1},
    "ollect": set(),  # not at a part boundary
    '"bound to"': {6},
    "user=alice": {5},
    "Service start": {3, 4},
}
SEARCHABLE_FIRST = 10  # seqs 1-10 are made searchable before the rest is written
ABANDONED = (11, 13)  # a writer's range that failed; lines of it reached the index
MISSING = 20  # an acknowledged seq whose line was removed
LAST = 30


def line(seq: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"message": f"{MESSAGES[seq % len(MESSAGES)]} #{seq}", "level": LEVELS[seq % len(LEVELS)]}
    if seq % 4 == 0:
        fields |= {"source": f"worker-{seq % 3}", "metadata": {"seq": seq, "tags": ["a", "b"]}}
    return fields


def shown(seq: int) -> bool:
    return not ABANDONED[0] <= seq <= ABANDONED[1] and seq != MISSING


def expected_seqs(after: int, q: str | None = None, levels: tuple[str, ...] = ()) -> list[int]:
    return [
        seq
        for seq in range(after + 1, LAST + 1)
        if shown(seq)
        and (q is None or seq % len(MESSAGES) in MATCHES[q])
        and (not levels or LEVELS[seq % len(LEVELS)] in levels)
    ]


# Single reads: (params, every seq they would show without a limit). Starting points below, at, inside and above
# the searchable part; short pages leave lines over in either part.
READS: list[tuple[dict[str, Any], list[int]]] = [
    *(({"after": after}, expected_seqs(after)) for after in (0, 5, 9, 10, 11, 12, 13, 19, 20, 29, 30)),
    ({"after": 0, "level": "error,fatal"}, expected_seqs(0, levels=("error", "fatal"))),
    ({"after": 15, "level": "trace"}, expected_seqs(15, levels=("trace",))),
    *(({"after": 0, "q": q}, expected_seqs(0, q)) for q in MATCHES),
    ({"after": 12, "q": "Service"}, expected_seqs(12, "Service")),
    ({"after": 0, "q": "Service", "level": "info"}, expected_seqs(0, "Service", ("info",))),
    ({"after": 0, "q": "Service.start", "highlight": "true"}, expected_seqs(0, "Service.start")),
    ({"after": 0, "q": "Collect Pause", "highlight": "true"}, expected_seqs(0, "Collect")),
    ({"after": 8, "highlight": "true"}, expected_seqs(8)),
    ({"after": 0, "limit": 3}, expected_seqs(0)),
    ({"after": 8, "limit": 3}, expected_seqs(8)),
    ({"after": 0, "limit": 9}, expected_seqs(0)),
    ({"after": 0, "limit": 10}, expected_seqs(0)),
    ({"after": 9, "limit": 1}, expected_seqs(9)),
    ({"after": 0, "limit": 2, "q": "Service"}, expected_seqs(0, "Service")),
    ({"after": 0, "limit": 1, "level": "fatal"}, expected_seqs(0, levels=("fatal",))),
]
# Tails that follow newestSeq from 0 until hasMore is false.
CHAINS: list[dict[str, Any]] = [
    {"limit": 1},
    {"limit": 4},
    {"limit": 7},
    {"limit": 2, "level": "error,info"},
    {"limit": 1, "q": "Service"},
    {"limit": 2, "q": "Service start", "highlight": "true"},
]


async def follow(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every page of a tail from ``after=0`` following ``newestSeq`` until ``hasMore`` is false."""
    pages: list[Any] = []
    after = 0
    while True:
        result = await page(client, job_id, headers, after=after, **params)
        pages.append(result)
        if not result["cursor"]["hasMore"]:
            return pages
        assert result["logs"], "a page with hasMore must not be empty"
        after = result["cursor"]["newestSeq"]
        assert len(pages) <= LAST, "the tail does not advance"


async def external_refreshes(es: AsyncElasticsearch, index: str) -> int:
    stats = await es.indices.stats(index=index, metric="refresh")
    return int(stats["indices"][index]["primaries"]["refresh"]["external_total"])


async def watermarks(redis: Redis, space_id: str, job_id: str) -> tuple[int, int]:
    """The job's (visible, durable) watermarks as Redis holds them."""
    keys = SpaceKeys(space_id)
    visible, durable = await redis.mget([keys.log_visible(job_id), keys.log_durable(job_id)])
    return int(visible or 0), int(durable or 0)


@contextlib.asynccontextmanager
async def scheduled_refresh_off(es: AsyncElasticsearch, index: str) -> AsyncIterator[None]:
    """The job's monthly index without its scheduled refresh for the block, so that lines become searchable only
    when the service refreshes them: the index is shared with other tests (on the cluster pass it may have been
    made by an instance with the default 1 s interval), and the app's setting only applies to a new index."""
    if not await es.indices.exists(index=index):
        with contextlib.suppress(elasticsearch.BadRequestError):  # made meanwhile by another test's writer
            await es.indices.create(index=index)
    current = await es.indices.get_settings(index=index, name="index.refresh_interval")
    interval = current[index]["settings"].get("index", {}).get("refresh_interval")
    await es.indices.put_settings(index=index, settings={"index": {"refresh_interval": "-1"}})
    try:
        yield
    finally:
        await es.indices.put_settings(index=index, settings={"index": {"refresh_interval": interval}})


async def searchable_lines(es: AsyncElasticsearch, index: str, job_id: str) -> int:
    """How many of the job's lines a search finds now (a count never refreshes)."""
    found = await es.count(index=index, routing=job_id, query={"term": {"job_id": job_id}})
    return int(found["count"])


async def test_tails_read_by_id_answer_what_searches_answer_after_a_refresh(
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    client = await make_client(index_refresh_interval_s=NO_SCHEDULED_REFRESH_S)
    job = await create_job(client, tenant, admin)
    job_id = job["id"]
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    async with scheduled_refresh_off(es, index):
        await append(client, job_id, admin, [line(seq) for seq in range(1, 6)])
        await append(client, job_id, admin, [line(seq) for seq in range(6, SEARCHABLE_FIRST + 1)])
        assert seqs(await page(client, job_id, admin)) == list(range(1, SEARCHABLE_FIRST + 1))  # refreshes: 1-10
        assert await watermarks(redis, tenant.space_id, job_id) == (SEARCHABLE_FIRST, SEARCHABLE_FIRST)

        # A writer reserves 11-13, part of its bulk lands (lines that match the reads below), then its append fails.
        seq_store = LogSeqStore(redis, ReadCache(redis, max_entries=0))
        failed = await seq_store.reserve(tenant.space_id, job_id, 3, 30_000, None, "-")
        assert not isinstance(failed, bytes)
        assert (failed.first_seq, failed.last_seq) == ABANDONED
        template = (await es.get(index=index, id=f"{job_id}:3", routing=job_id))["_source"]  # "AllocationService.start"
        for seq in (11, 12):
            stray = template | {"seq": seq, "id": f"01ARZ3NDEKTSV4RRFFQ69G5F{seq:02d}", "level": "error"}
            await es.index(index=index, id=f"{job_id}:{seq}", routing=job_id, document=stray, refresh=False)
        await seq_store.finish(tenant.space_id, job_id, failed, None, 60, "-", None)  # abandoned
        await append(client, job_id, admin, [line(seq) for seq in range(14, 22)])
        await append(client, job_id, admin, [line(seq) for seq in range(22, LAST + 1)])
        await es.delete(index=index, id=f"{job_id}:{MISSING}", routing=job_id, refresh=False)

        refreshes_before = await external_refreshes(es, index)
        assert await watermarks(redis, tenant.space_id, job_id) == (SEARCHABLE_FIRST, LAST)
        by_id = {repr(params): await page(client, job_id, admin, **params) for params, _ in READS}
        chains_by_id = [await follow(client, job_id, admin, **params) for params in CHAINS]
        # Nothing was refreshed: the lines above 10 were never searchable, so every answer came from reads by id.
        assert await external_refreshes(es, index) == refreshes_before
        assert await watermarks(redis, tenant.space_id, job_id) == (SEARCHABLE_FIRST, LAST)
        assert await searchable_lines(es, index, job_id) == SEARCHABLE_FIRST

        for params, every in READS:
            result = by_id[repr(params)]
            limit = params.get("limit", LOGS_LIMIT_DEFAULT)
            shown_seqs = every[:limit]
            assert seqs(result) == shown_seqs, params
            assert result["cursor"] == {
                "mode": "after",
                "oldestSeq": shown_seqs[0] if shown_seqs else None,
                "newestSeq": shown_seqs[-1] if shown_seqs else None,
                "hasMore": len(every) > limit,
            }, params
        for params, pages in zip(CHAINS, chains_by_id, strict=True):
            followed = [seq for result in pages for seq in seqs(result)]
            levels = tuple(params["level"].split(",")) if "level" in params else ()
            assert followed == expected_seqs(0, params.get("q"), levels), params  # no skip, no repeat
        line_16 = next(entry for entry in by_id[repr({"after": 0})]["logs"] if entry["seq"] == 16)
        assert (line_16["source"], line_16["metadata"]) == ("worker-1", {"seq": 16, "tags": ["a", "b"]})
        highlighted = by_id[repr({"after": 0, "q": "Service.start", "highlight": "true"})]["logs"]
        assert [[entry["message"][a:b] for a, b in entry["highlights"]] for entry in highlighted] == [
            ["Service.start"]
        ] * len(highlighted)

        # The same reads once every line is searchable (a latest page refreshes): answered by searches.
        assert seqs(await page(client, job_id, admin, limit=1)) == [LAST]
        assert await watermarks(redis, tenant.space_id, job_id) == (LAST, LAST)
        assert await external_refreshes(es, index) > refreshes_before
        searched = {repr(params): await page(client, job_id, admin, **params) for params, _ in READS}
        chains_searched = [await follow(client, job_id, admin, **params) for params in CHAINS]
        for params, _ in READS:
            assert by_id[repr(params)] == searched[repr(params)], params
        assert chains_by_id == chains_searched


async def test_a_tail_with_q_over_lines_without_the_search_fields_refreshes_and_searches(
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    """A line rewritten by an older joblens (no ``words``: an index made before the search fields, where the
    analysed ``message`` finds whole tokens only) cannot be decided by `WordMatcher` as a search would: a ``q``
    tail over it refreshes and searches instead."""
    index = f"{settings.index_prefix}-{datetime.now(UTC):%Y.%m}"
    old_settings = {"number_of_replicas": settings.index_replicas, "refresh_interval": "-1"}
    await es.indices.create(index=index, mappings=LEGACY_MAPPINGS, settings=old_settings)
    client = await make_client(index_refresh_interval_s=NO_SCHEDULED_REFRESH_S)  # the old index gains the fields
    job = await create_job(client, tenant, admin)
    job_id = job["id"]
    assert index_for(settings.index_prefix, ms_from_iso(job["createdAt"])) == index
    await append(client, job_id, admin, [{"message": MESSAGES[0]}, {"message": MESSAGES[1]}])
    for seq in (1, 2):  # what an older joblens wrote: the same lines without the search fields (not refreshed)
        stored = (await es.get(index=index, id=f"{job_id}:{seq}", routing=job_id))["_source"]
        legacy = {k: v for k, v in stored.items() if k not in ("words", "joins", "job_name")}
        await es.index(index=index, id=f"{job_id}:{seq}", routing=job_id, document=legacy, refresh=False)
    await append(client, job_id, admin, [{"message": MESSAGES[1]}])  # seq 3, with the fields
    refreshes_before = await external_refreshes(es, index)

    # Without q the old lines are read by id like any other: no refresh.
    plain = await page(client, job_id, admin, after=0)
    assert [entry["message"] for entry in plain["logs"]] == [MESSAGES[0], MESSAGES[1], MESSAGES[1]]
    assert await external_refreshes(es, index) == refreshes_before
    assert await watermarks(redis, tenant.space_id, job_id) == (0, 3)

    # "Collect" is a camelCase part: the old line 2 holds it only inside a whole token, which its search misses.
    assert seqs(await page(client, job_id, admin, after=0, q="Collect")) == [3]
    assert await watermarks(redis, tenant.space_id, job_id) == (3, 3)
    assert await external_refreshes(es, index) > refreshes_before
    assert seqs(await page(client, job_id, admin, after=0, q="reason=shards")) == [1]  # whole tokens: old lines too


async def test_more_unsearchable_lines_than_a_read_by_id_takes_are_refreshed_and_searched(
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    es: AsyncElasticsearch,
    settings: Settings,
) -> None:
    client = await make_client(index_refresh_interval_s=NO_SCHEDULED_REFRESH_S)
    job = await create_job(client, tenant, admin)
    job_id = job["id"]
    index = index_for(settings.index_prefix, ms_from_iso(job["createdAt"]))
    async with scheduled_refresh_off(es, index):
        total = UNSEARCHABLE_FETCH_MAX + 100
        lines = [
            {"message": f"bulk line {seq}", "level": "warn" if seq % 5 == 0 else "info"} for seq in range(1, total + 1)
        ]
        await append(client, job_id, admin, lines[:UNSEARCHABLE_FETCH_MAX])
        await append(client, job_id, admin, lines[UNSEARCHABLE_FETCH_MAX:])
        refreshes_before = await external_refreshes(es, index)
        assert await watermarks(redis, tenant.space_id, job_id) == (0, total)

        # Exactly UNSEARCHABLE_FETCH_MAX seqs after the cursor: still read by id.
        edge = total - UNSEARCHABLE_FETCH_MAX
        at_limit = await page(client, job_id, admin, after=edge, limit=500)
        assert seqs(at_limit) == list(range(edge + 1, edge + 501))
        assert at_limit["cursor"]["hasMore"] is True
        warned = await page(client, job_id, admin, after=edge, limit=500, level="warn")
        assert seqs(warned) == [seq for seq in range(edge + 1, total + 1) if seq % 5 == 0]
        assert warned["cursor"]["hasMore"] is False
        assert await external_refreshes(es, index) == refreshes_before
        assert await watermarks(redis, tenant.space_id, job_id) == (0, total)

        # One more: refreshed, then searched; the page is the same as ever.
        beyond = await page(client, job_id, admin, after=edge - 1, limit=500)
        assert seqs(beyond) == list(range(edge, edge + 500))
        assert beyond["cursor"] == {"mode": "after", "oldestSeq": edge, "newestSeq": edge + 499, "hasMore": True}
        assert await watermarks(redis, tenant.space_id, job_id) == (total, total)
        assert await external_refreshes(es, index) > refreshes_before
        assert await searchable_lines(es, index, job_id) == total
        assert seqs(await page(client, job_id, admin, after=edge, limit=500, level="warn")) == seqs(warned)


CAMEL_RUN = "OneTwoThreeFourFiveSixSevenEightNineTen"  # 10 camelCase parts: `joins` holds runs of up to 3 of them


@pytest.mark.parametrize(
    ("message", "q", "expected"),
    [
        (f"x {'a' * 255} y", "a" * 255, [2]),
        (f"x {CAMEL_RUN} y", "TwoThreeFour", [2]),
        (f"x {CAMEL_RUN} y", CAMEL_RUN, [2]),
        pytest.param(f"x {'a' * 300} y", "a" * 300, [2], id="letter-run-over-255"),
        pytest.param(f"x {'a' * 300} y", "a" * 255, [], id="piece-of-a-letter-run-over-255"),
        pytest.param(f"x {CAMEL_RUN} y", "TwoThreeFourFive", [2], id="4-parts-of-10"),
        pytest.param(f"x {CAMEL_RUN} y", "OneTwoThreeFour", [2], id="first-4-parts-of-10"),
        pytest.param(f"x {CAMEL_RUN} y", "TwoThreeFive", [], id="parts-not-in-a-row"),
        # both windows of the word ("twothreefour", "threefourfive") are in `joins`, but not as one run
        pytest.param("x OneTwoThreeFourAaBbCcDdEe ThreeFourFiveAaBbCcDdEeFf y", "TwoThreeFourFive", [], id="apart"),
    ],
)
async def test_a_word_is_decided_alike_by_id_and_by_a_search(
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    redis: Redis,
    message: str,
    q: str,
    expected: list[int],
) -> None:
    client = await make_client(index_refresh_interval_s=NO_SCHEDULED_REFRESH_S)
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, [{"message": "searchable"}])
    assert seqs(await page(client, job["id"], admin)) == [1]  # refreshes
    await append(client, job["id"], admin, [{"message": message}])
    by_id = seqs(await page(client, job["id"], admin, after=0, q=q))
    assert await watermarks(redis, tenant.space_id, job["id"]) == (1, 2)  # not refreshed: seq 2 was read by id
    assert seqs(await page(client, job["id"], admin)) == [1, 2]  # refreshes
    searched = seqs(await page(client, job["id"], admin, after=0, q=q))
    assert (by_id, searched) == (expected, expected)
