"""Log search over one job: word parts of every kind, highlights, context around a line, export, old indices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch

from service.settings import Settings
from tests.helpers import AppFactory, Tenant, body, create_job, run_joblens
from tests.logs_helpers import LEGACY_MAPPINGS, append, page, seqs

# seq → message: real shapes of log lines (Elasticsearch, the JVM's GC, dpkg/apt, a web server)
LINES = [
    "[o.e.c.r.a.AllocationService] [node-1] current.health=GREEN reason=shards started",  # 1
    "GC(12) Pause Young (G1CollectForAllocation) 24M->3M(256M) 3.512ms",  # 2
    "status installed zstd:amd64 1.5.4+dfsg2-5",  # 3
    "configure python3-apt:amd64 2.6.0 <none>",  # 4
    "reading /var/lib/dpkg/status from 10.0.0.12:9300",  # 5
    "HTTPServer bound to\t[127.0.0.1:9200], publish_address {127.0.0.1:9200}",  # 6
    "user=alice action=login took=15ms id=7f3a9c2e",  # 7
    "useralice action login",  # 8: near misses only
    "org.elasticsearch.cluster.service.MasterService: publishing cluster state version [42]",  # 9
]
LEVELS = ["info", "info", "info", "warn", "info", "info", "error", "info", "debug"]


@pytest.fixture
async def job_id(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> str:
    job = await create_job(client, tenant, admin, name="search-job")
    await append(client, job["id"], admin, [{"message": m, "level": lv} for m, lv in zip(LINES, LEVELS, strict=True)])
    return str(job["id"])


@pytest.fixture
def test_env(settings: Settings) -> dict[str, str]:
    """What the ``joblens`` command needs to reach this test's stores and indices."""
    return {
        "JOBLENS_REDIS_URL": settings.redis_url,
        "JOBLENS_ELASTICSEARCH_URL": ",".join(settings.elasticsearch_urls),
        "JOBLENS_INDEX_PREFIX": settings.index_prefix,
    }


async def found(client: TestClient[Any, Any], job_id: str, headers: dict[str, str], q: str, **params: Any) -> list[int]:
    return seqs(await page(client, job_id, headers, q=q, after=0, **params))


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("AllocationService", [1]),  # the last part of a dotted class name
        ("allocationservice", [1]),  # in any case
        ("Collect", [2]),  # a camelCase part
        ("collectfor", [2]),  # several camelCase parts, in lower case
        ("ollect", []),  # not at a part boundary
        ("org.elasticsearch.cluster", [9]),  # a dotted package prefix
        ("MasterService", [9]),
        ("zstd", [3]),  # name:arch and its parts
        ("zstd:amd64", [3]),
        ("amd64", [3, 4]),
        ("APT", [4]),  # an upper-case word inside a hyphenated name
        ("python3-apt", [4]),
        ("1.5.4", [3]),  # a version
        ("dpkg", [5]),  # a path segment
        ("/var/lib/dpkg", [5]),
        ("10.0.0.12", [5]),  # an IP, and ip:port
        ("127.0.0.1:9200", [6]),
        ("Server", [6]),  # HTTP|Server
        ("user=alice", [7]),  # key=value: both halves together
        ("15ms", [7]),  # a number with its unit
        ("7f3a9c2e", [7]),  # an id
        ("action login", [7, 8]),  # AND, any order
        ('"bound to"', [6]),  # a phrase (a tab in the line)
        ('"to bound"', []),
        ("GREEN reason=shards", [1]),
    ],
)
async def test_word_parts_are_found_exactly(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, q: str, expected: list[int]
) -> None:
    assert await found(client, job_id, admin, q) == expected


async def test_level_narrows_a_search(client: TestClient[Any, Any], admin: dict[str, str], job_id: str) -> None:
    assert await found(client, job_id, admin, "amd64", level="warn") == [4]
    assert await found(client, job_id, admin, "action", level="info,debug") == [8]


async def test_verified_candidates_fill_a_page_across_batches(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    """Lines that Elasticsearch finds but that do not match exactly are left out without shortening pages."""
    job = await create_job(client, tenant, admin)
    near_misses = [{"message": f"Service {n} . start"} for n in range(1500)]  # tokens there, not in order
    await append(client, job["id"], admin, near_misses[:1000])
    await append(client, job["id"], admin, [*near_misses[1000:], {"message": "AllocationService.start ok"}])
    await append(client, job["id"], admin, [{"message": "ReplicaService.start"}, {"message": "x.Service.start"}])
    result = await page(client, job["id"], admin, q="Service.start", after=0, limit=2)
    assert seqs(result) == [1501, 1502]
    assert result["cursor"]["hasMore"] is True
    assert seqs(await page(client, job["id"], admin, q="Service.start", after=1502)) == [1503]
    assert seqs(await page(client, job["id"], admin, q="Service.start")) == [1501, 1502, 1503]


async def test_highlights_give_character_ranges_of_every_match(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    result = await page(client, job_id, admin, q="zstd amd64", highlight="true")
    (line,) = result["logs"]
    assert [line["message"][start:end] for start, end in line["highlights"]] == ["zstd", "amd64"]
    plain = await page(client, job_id, admin, after=0, limit=1, highlight="true")
    assert plain["logs"][0]["highlights"] == []
    assert "highlights" not in (await page(client, job_id, admin, q="zstd"))["logs"][0]


async def test_around_centres_on_a_line_and_continues_both_ways(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    await append(
        client, job["id"], admin, [{"message": f"line {n}", "level": "warn" if n % 2 else "info"} for n in range(1, 21)]
    )
    centred = await page(client, job["id"], admin, around=10, limit=5)
    assert seqs(centred) == [8, 9, 10, 11, 12]
    assert centred["cursor"] == {
        "mode": "around",
        "oldestSeq": 8,
        "newestSeq": 12,
        "hasMore": True,
        "hasOlder": True,
        "hasNewer": True,
    }
    assert seqs(await page(client, job["id"], admin, before=8, limit=2)) == [6, 7]  # the cursor continues
    assert seqs(await page(client, job["id"], admin, around=2, limit=5)) == [1, 2, 3, 4, 5]
    at_end = await page(client, job["id"], admin, around=20, limit=4)
    assert seqs(at_end) == [17, 18, 19, 20]
    assert (at_end["cursor"]["hasOlder"], at_end["cursor"]["hasNewer"]) == (True, False)
    assert seqs(await page(client, job["id"], admin, around=10, limit=3, level="warn")) == [7, 9, 11]
    assert seqs(await page(client, job["id"], admin, around=500, limit=2)) == [19, 20]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"around": "3", "after": "1"}, "around cannot be combined with after"),
        ({"around": "3", "q": "x", "before": "9"}, "around cannot be combined with before or q"),
        ({"around": "0"}, "around"),
        ({"highlight": "maybe"}, "highlight must be true or false"),
    ],
)
async def test_around_conflicts_are_named(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str, params: dict[str, str], message: str
) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/logs", params=params, headers=admin)
    assert message in (await body(response, 400))["error"]


async def test_export_streams_every_line_in_order(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    job = await create_job(client, tenant, admin)
    for start in range(0, 12_000, 1000):
        await append(
            client,
            job["id"],
            admin,
            [{"message": f"line {n}", "level": "warn" if n % 3 == 0 else "info"} for n in range(start, start + 1000)],
        )
    response = await client.get(f"/api/v1/jobs/{job['id']}/logs/export", headers=admin)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert f'filename="{job["id"]}.ndjson"' in response.headers["Content-Disposition"]
    lines = [orjson.loads(raw) for raw in (await response.read()).splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 12_001))
    assert lines[0] == (await page(client, job["id"], admin, after=0, limit=1))["logs"][0]

    text = await client.get(
        f"/api/v1/jobs/{job['id']}/logs/export",
        params={"format": "text", "level": "warn", "q": "line 9"},
        headers=admin,
    )
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    rows = (await text.text()).splitlines()
    assert len(rows) == 1 and rows[0].endswith(" WARN  line 9")


async def test_export_errors_are_json_before_the_download_starts(
    client: TestClient[Any, Any], admin: dict[str, str], job_id: str
) -> None:
    missing = await client.get("/api/v1/jobs/nope/logs/export", headers=admin)
    assert (await body(missing, 404))["error"]
    bad = await client.get(f"/api/v1/jobs/{job_id}/logs/export", params={"format": "xml"}, headers=admin)
    assert "format must be one of ndjson, text" in (await body(bad, 400))["error"]


async def test_indices_made_before_the_search_fields_keep_working_and_upgrade(
    make_client: AppFactory,
    tenant: Tenant,
    admin: dict[str, str],
    es: AsyncElasticsearch,
    settings: Settings,
    test_env: dict[str, str],
) -> None:
    index = f"{settings.index_prefix}-{datetime.now(UTC):%Y.%m}"
    await es.indices.create(index=index, mappings=LEGACY_MAPPINGS, settings={"number_of_replicas": 0})
    client = await make_client()  # installs the template: the old index gains the new fields
    job = await create_job(client, tenant, admin, name="legacy")
    await append(client, job["id"], admin, [{"message": m} for m in LINES[:3]])
    # what an older joblens wrote: the same lines without the search fields
    await es.indices.refresh(index=index)
    stored = await es.search(index=index, query={"term": {"job_id": job["id"]}}, size=10, seq_no_primary_term=False)
    assert len(stored["hits"]["hits"]) == 3
    for hit in stored["hits"]["hits"]:
        legacy = {k: v for k, v in hit["_source"].items() if k not in ("words", "joins", "job_name")}
        await es.index(index=index, id=hit["_id"], routing=hit["_routing"], document=legacy)
    await es.indices.refresh(index=index)
    await append(client, job["id"], admin, [{"message": LINES[1]}])  # seq 4, written with the fields

    assert await found(client, job["id"], admin, "reason=shards") == [1]  # whole tokens: old lines too
    assert await found(client, job["id"], admin, "Collect") == [4]  # word parts: new lines only, until upgraded

    upgraded = await run_joblens("indices", "upgrade", env=test_env)
    assert upgraded.code == 0, upgraded.stderr
    assert orjson.loads(upgraded.stdout.splitlines()[0]) == {"index": index, "rewritten": 3, "skipped": 0}
    assert await found(client, job["id"], admin, "Collect") == [2, 4]
    assert await found(client, job["id"], admin, "zstd") == [3]
    again = await run_joblens("indices", "upgrade", env=test_env)
    assert orjson.loads(again.stdout.splitlines()[0]) == {"index": index, "rewritten": 0, "skipped": 0}


async def space_search(client: TestClient[Any, Any], space_id: str, headers: dict[str, str], **params: Any) -> Any:
    return await body(await client.get(f"/api/v1/spaces/{space_id}/logs", params=params, headers=headers), 200)


async def test_a_space_search_finds_lines_of_every_job_newest_first(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    build = await create_job(client, tenant, admin, name="build")
    deploy = await create_job(client, tenant, admin, name="deploy")
    await append(client, build["id"], admin, [{"message": "fetch zstd:amd64"}, {"message": "compile G1Collect"}])
    await append(client, deploy["id"], admin, [{"message": "ship zstd", "level": "warn"}, {"message": "other"}])
    await append(client, build["id"], admin, [{"message": "zstd_1.5 done"}])

    answer = await space_search(client, tenant.space_id, admin, q="zstd", highlight="true")
    assert [(hit["jobId"], hit["jobName"], hit["seq"]) for hit in answer["logs"]] == [
        (build["id"], "build", 3),
        (deploy["id"], "deploy", 1),
        (build["id"], "build", 1),
    ]
    assert answer["cursor"] == {"next": None, "hasMore": False}
    hit = answer["logs"][0]
    assert set(hit) == {
        "jobId",
        "jobName",
        "id",
        "seq",
        "level",
        "message",
        "source",
        "metadata",
        "loggedAt",
        "createdAt",
        "highlights",
    }
    assert hit["highlights"] == [[0, 4]]
    warn = await space_search(client, tenant.space_id, admin, q="zstd", level="warn")
    assert [hit["jobName"] for hit in warn["logs"]] == ["deploy"]
    named = await space_search(client, tenant.space_id, admin, name="build")
    assert [hit["seq"] for hit in named["logs"]] == [3, 2, 1]
    assert [hit["message"] for hit in (await space_search(client, tenant.space_id, admin, q="Collect"))["logs"]] == [
        "compile G1Collect"
    ]


async def test_a_space_search_pages_on_by_cursor_without_repeats_while_lines_arrive(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    jobs = [await create_job(client, tenant, admin, name=f"job-{n}") for n in range(3)]
    for round_ in range(4):
        for job in jobs:
            await append(client, job["id"], admin, [{"message": f"step {round_} of {job['name']} ok"}])
    seen: list[tuple[str, int]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"q": "step ok", "limit": 5} | ({"cursor": cursor} if cursor else {})
        answer = await space_search(client, tenant.space_id, admin, **params)
        seen += [(hit["jobId"], hit["seq"]) for hit in answer["logs"]]
        pages += 1
        await append(client, jobs[0]["id"], admin, [{"message": "step late ok"}])  # newer than the window
        cursor = answer["cursor"]["next"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 12
    assert [seq for job_id, seq in seen if job_id == jobs[0]["id"]] == [4, 3, 2, 1]


async def test_a_space_search_never_shows_a_line_not_acknowledged(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], es: AsyncElasticsearch, settings: Settings
) -> None:
    job = await create_job(client, tenant, admin, name="j")
    await append(client, job["id"], admin, [{"message": "visible needle"}])
    # a line in Elasticsearch above the job's watermark: what a writer still in flight has sent
    index = f"{settings.index_prefix}-{datetime.now(UTC):%Y.%m}"
    stored = await es.search(index=index, query={"term": {"job_id": job["id"]}})
    await es.indices.refresh(index=index)
    stored = await es.search(index=index, query={"term": {"job_id": job["id"]}})
    in_flight = stored["hits"]["hits"][0]["_source"] | {
        "seq": 2,
        "message": "pending needle",
        "words": "pending needle",
    }
    await es.index(index=index, id=f"{job['id']}:2", routing=job["id"], document=in_flight, refresh=True)
    answer = await space_search(client, tenant.space_id, admin, q="needle")
    assert [hit["message"] for hit in answer["logs"]] == ["visible needle"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "may span at most 31 days"),
        ({"since": "2026-03-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since must not be later than until"),
        ({"since": "yesterday"}, "since must be an ISO-8601 time"),
        ({"cursor": "bm9wZQ"}, "cursor is not one this API gave out"),
        ({"level": "loud"}, "level must be one or more of"),
    ],
)
async def test_a_space_search_refuses_bad_windows_and_cursors(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], params: dict[str, str], message: str
) -> None:
    response = await client.get(f"/api/v1/spaces/{tenant.space_id}/logs", params=params, headers=admin)
    assert message in (await body(response, 400))["error"]


async def test_a_space_search_that_runs_too_long_is_cut_with_504(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    client = await make_client(space_search_timeout_s=0.000001)
    job = await create_job(client, tenant, admin)
    await append(client, job["id"], admin, [{"message": "x"}])
    response = await client.get(f"/api/v1/spaces/{tenant.space_id}/logs", params={"q": "x"}, headers=admin)
    assert "narrow it" in (await body(response, 504))["error"]
