"""The measurement through the HTTP API only: load the corpus into one job, run every query, compare.

The service under test is any running joblens; how it implements ``q`` is not looked at. A fresh space (and
key) is made in Redis the way the other benchmarks make theirs, then everything goes through the API: the job
is created, the corpus appended in order, read back whole (the service must store each message and level as
sent, or the comparison would mean nothing), and each query paged through with ``after`` until ``hasMore`` is
false.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from redis.asyncio import Redis

from bench.api import Api
from bench.quality.corpus import CorpusLine
from bench.quality.queries import Query
from bench.quality.score import QueryOutcome
from bench.quality.truth import CorpusTruth
from bench.seed import RUN_SCOPES
from service.stores.redis_api_keys import ApiKeyStore

APPEND_LINES = 1000  # JOBLENS_MAX_LOG_LINES' default
PAGE_LIMIT = 500  # the API's largest page
CONCURRENCY = 4  # queries in flight: enough to keep the service busy, little for 2 shared cores


@dataclass(frozen=True, slots=True)
class LoadedJob:
    job_id: str
    index_of_seq: dict[int, int]  # seq → corpus index


async def fresh_space(redis_url: str, name: str) -> tuple[str, str]:
    """A new space and an API key for it (create, read, worker scopes): ``(space id, key)``."""
    redis = Redis.from_url(redis_url)
    try:
        store = ApiKeyStore(redis)
        space = await store.create_space(name)
        api_key, _ = await store.create_key(space["id"], RUN_SCOPES, "bench-quality")
    finally:
        await redis.aclose()
    return str(space["id"]), api_key


async def load_job(api: Api, space_id: str, lines: Sequence[CorpusLine]) -> LoadedJob:
    """One job holding the corpus, appended in order in batches of `APPEND_LINES`, then checked line by line."""
    [job] = await api.create_jobs(space_id, [{"name": "search-quality", "payload": {"lines": len(lines)}}])
    job_id = str(job["id"])
    index_of_seq: dict[int, int] = {}
    for start in range(0, len(lines), APPEND_LINES):
        batch = lines[start : start + APPEND_LINES]
        body = {"logs": [{"message": line.message, "level": line.level, "source": line.source} for line in batch]}
        answer = await api.call("POST", f"/api/v1/jobs/{job_id}/logs", body)
        first_seq = int(answer["firstSeq"])
        index_of_seq.update({first_seq + offset: start + offset for offset in range(len(batch))})
    await _check_stored(api, job_id, lines, index_of_seq)
    return LoadedJob(job_id, index_of_seq)


async def _check_stored(api: Api, job_id: str, lines: Sequence[CorpusLine], index_of_seq: dict[int, int]) -> None:
    stored = await _page_through(api, job_id, {})
    if sorted(line["seq"] for line in stored) != sorted(index_of_seq):
        raise RuntimeError(f"the job holds {len(stored)} lines, {len(lines)} were appended")
    for line in stored:
        sent = lines[index_of_seq[line["seq"]]]
        if (line["message"], line["level"]) != (sent.message, sent.level):
            raise RuntimeError(f"seq {line['seq']} was stored as {line['message']!r} ({line['level']}), not as sent")


async def _page_through(api: Api, job_id: str, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Every line the filters select, by pages of `PAGE_LIMIT` from the start (``after``)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        query = urlencode({**filters, "after": after, "limit": PAGE_LIMIT})
        page = await api.call("GET", f"/api/v1/jobs/{job_id}/logs?{query}")
        found += page["logs"]
        if not page["cursor"]["hasMore"] or not page["logs"]:
            return found
        after = int(page["cursor"]["newestSeq"])


async def search(api: Api, job: LoadedJob, query: Query) -> frozenset[int]:
    """The corpus indexes of the lines the service returns for ``query``."""
    filters = {"q": query.q} | ({"level": ",".join(query.levels)} if query.levels else {})
    found = await _page_through(api, job.job_id, filters)
    return frozenset(job.index_of_seq[int(line["seq"])] for line in found)


@dataclass(frozen=True, slots=True)
class Measurement:
    outcomes: list[QueryOutcome]
    load_s: float
    search_s: float
    where: str  # the space and job that hold the corpus


async def measure(
    base_url: str, redis_url: str, lines: Sequence[CorpusLine], truth: CorpusTruth, queries: Sequence[Query]
) -> Measurement:
    """Load ``lines`` into a job of a fresh space of the service at ``base_url`` and run ``queries`` on it."""
    space_id, api_key = await fresh_space(redis_url, "jlbench-quality")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        api = Api(session, base_url, api_key)
        started = time.monotonic()
        job = await load_job(api, space_id, lines)
        loaded = time.monotonic()
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(query: Query) -> QueryOutcome:
            async with limit:
                found = await search(api, job, query)
            return QueryOutcome(
                query, found, truth.word_parts(query.q, query.levels), truth.grep(query.q, query.levels)
            )

        outcomes = await asyncio.gather(*(one(query) for query in queries))
    done = time.monotonic()
    return Measurement(list(outcomes), loaded - started, done - loaded, f"space {space_id}, job {job.job_id}")
