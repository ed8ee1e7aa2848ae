"""Log lines in Elasticsearch: the index template, bulk writes and the seq-ordered reads.

Owns every index matching ``<prefix>-*`` and the composable template ``<prefix>``
(from ``index_templates/joblogs.json``, see ``JOBLENS_INDEX_TEMPLATES_DIR``). A job's lines live in the index of
the job's creation month (``<prefix>-YYYY.MM``), routed by job id (one shard), with ``_id = <jobId>:<seq>``
written by ``create`` so a retried bulk can never store a line twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import elastic_transport
import elasticsearch
import orjson
from elasticsearch import AsyncElasticsearch

from service.domain.logs import LogQuery
from service.settings import Settings

TEMPLATE_FILE_NAME = "joblogs.json"
RETRYABLE_ITEM_STATUSES = frozenset({429, 500, 502, 503, 504})
# A bulk request that failed as a whole (a dropped connection, an overloaded node) is retried for a moment: long
# enough for a blip, short enough that an outage answers 503 at once rather than holding every writer.
TRANSPORT_RETRY_S = 2.0
REQUEST_FAILURES = (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout, elasticsearch.ApiError)
CLEANUP_TIMEOUT_S = 5.0  # looking at and deleting what a failed append left: must not hold up its answer long
CLEANUP_PAGE_LINES = 1000
LINE_FIELDS = ["id", "seq", "level", "message", "source", "metadata", "logged_at", "created_at"]


class BulkFailed(Exception):
    """Some lines could not be indexed within the time allowed."""


class SeqCollision(Exception):
    """Seqs reserved for an append already hold other lines: the seq counter fell behind the index (Redis lost
    recent writes: a restart without fsync, a failover to a lagging replica). Those lines were acknowledged
    once and must stay; ``ours`` are the seqs this append may have written."""

    def __init__(self, foreign: frozenset[int], ours: frozenset[int]) -> None:
        super().__init__(f"{len(foreign)} seq(s) already hold other lines")
        self.foreign = foreign
        self.ours = ours


@dataclass(slots=True)
class BulkOutcome:
    created: set[int] = field(default_factory=set)
    existing: set[int] = field(default_factory=set)  # 409
    failed: list[int] = field(default_factory=list)
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class LogPage:
    lines: list[dict[str, Any]]  # ascending seq
    has_more: bool


def index_template(settings: Settings) -> dict[str, Any]:
    """The template file with this deployment's prefix, shard and replica counts and refresh interval."""
    template: dict[str, Any] = orjson.loads((Path(settings.index_templates_dir) / TEMPLATE_FILE_NAME).read_bytes())
    template["index_patterns"] = [f"{settings.index_prefix}-*"]
    index_settings = template["template"]["settings"]["index"]
    index_settings["number_of_shards"] = settings.index_shards
    index_settings["number_of_replicas"] = settings.index_replicas
    index_settings["refresh_interval"] = f"{int(settings.index_refresh_interval_s * 1000)}ms"
    return template


def index_for(prefix: str, job_created_ms: int) -> str:
    created = datetime.fromtimestamp(job_created_ms / 1000, tz=UTC)
    return f"{prefix}-{created:%Y.%m}"


class RefreshCoalescer:
    """Makes written lines searchable with explicit ``_refresh`` calls, at most one in flight per index: every
    caller that arrives while one runs waits for the next, which then serves all of them at once.

    Why: a refresh per bulk (``refresh=true``) costs Elasticsearch one small segment per request, and waiting for
    the scheduled one (``refresh=wait_for``) costs up to a whole interval. Readers that need newer lines ask for a
    refresh; however many ask at once, an index is refreshed at most once at a time per process."""

    def __init__(self, es: AsyncElasticsearch) -> None:
        self._es = es
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}  # index → callers for the next refresh
        self._running: dict[str, asyncio.Task[None]] = {}

    async def refreshed(self, index: str, timeout_s: float) -> None:
        """Return once a refresh of ``index`` that began after this call has finished: everything written
        before the call is then searchable."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(index, []).append(waiter)
        if index not in self._running:
            self._running[index] = asyncio.create_task(self._refresh_rounds(index, timeout_s))
        await waiter

    async def _refresh_rounds(self, index: str, timeout_s: float) -> None:
        try:
            while waiters := self._waiting.pop(index, []):
                try:
                    await self._es.options(request_timeout=max(0.5, timeout_s)).indices.refresh(
                        index=index, ignore_unavailable=True
                    )
                except Exception as exc:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            del self._running[index]


class LogStore:
    def __init__(self, es: AsyncElasticsearch, settings: Settings) -> None:
        self._es = es
        self._settings = settings
        self._refreshes = RefreshCoalescer(es)

    async def install_template(self) -> None:
        """Create or update the template; harmless to repeat (PUT replaces it with the same content)."""
        await self._es.indices.put_index_template(name=self._settings.index_prefix, **index_template(self._settings))

    async def index_lines(
        self, job_id: str, job_created_ms: int, first_seq: int, docs: Sequence[dict[str, Any]], deadline: float
    ) -> None:
        """Index ``docs`` as seqs ``first_seq…``, durable (in the translog) on return and searchable after the
        next refresh (`make_searchable`); retries transient failures (of lines or of the whole request) until
        ``deadline`` (monotonic). Raises `BulkFailed` when that is not possible, and `SeqCollision` when some of
        these seqs already hold other lines."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        # Each document is serialized once, without its closing brace: a retry only appends the seq again.
        pending = {first_seq + offset: orjson.dumps(doc)[:-1] for offset, doc in enumerate(docs)}
        line_ids = {first_seq + offset: str(doc["id"]) for offset, doc in enumerate(docs)}
        created: set[int] = set()
        existing: set[int] = set()  # answered 409: an earlier attempt of ours, or another line (see below)
        delay_s = 0.05
        transport_retry_until = min(deadline, time.monotonic() + TRANSPORT_RETRY_S)
        while True:
            try:
                outcome = await self._bulk_create(index, job_id, pending, deadline)
            except REQUEST_FAILURES as exc:
                transient = not isinstance(exc, elasticsearch.ApiError) or exc.meta.status in RETRYABLE_ITEM_STATUSES
                if not transient:
                    raise
                if time.monotonic() + delay_s >= transport_retry_until:
                    raise BulkFailed(f"Elasticsearch failed the request: {type(exc).__name__}") from exc
                outcome = BulkOutcome(failed=list(pending))
            created |= outcome.created
            existing |= outcome.existing
            if not outcome.failed:
                break
            if outcome.fatal or time.monotonic() + delay_s >= deadline:
                raise BulkFailed(f"{len(outcome.failed)} line(s) not indexed")
            pending = {seq: pending[seq] for seq in outcome.failed}
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)
        if existing - created:
            foreign = await self._not_ours(index, job_id, {seq: line_ids[seq] for seq in existing - created})
            if foreign:
                raise SeqCollision(foreign, ours=frozenset(set(line_ids) - foreign))

    async def make_searchable(self, job_created_ms: int) -> None:
        """Return once everything written to the job's index before this call is searchable: a refresh that began
        after the call, shared with every caller meanwhile."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        await self._refreshes.refreshed(index, self._settings.es_request_timeout_s)

    async def _not_ours(self, index: str, job_id: str, line_ids: dict[int, str]) -> frozenset[int]:
        """Of these seqs (answered 409), those whose stored line is not the one this append sent."""
        stored = await self._stored_ids(index, job_id, line_ids)
        return frozenset(seq for seq, line_id in line_ids.items() if stored.get(seq) != line_id)

    async def stored_line_ids(self, job_id: str, job_created_ms: int, seqs: Iterable[int]) -> dict[int, str]:
        """seq → id of the line stored at that seq, for those of ``seqs`` that hold one (a clean-up: brief)."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        return await self._stored_ids(index, job_id, seqs, CLEANUP_TIMEOUT_S)

    async def _stored_ids(
        self, index: str, job_id: str, seqs: Iterable[int], timeout_s: float | None = None
    ) -> dict[int, str]:
        ids = [f"{job_id}:{seq}" for seq in seqs]
        if not ids:
            return {}
        client = self._es if timeout_s is None else self._es.options(request_timeout=timeout_s)
        response = await client.mget(index=index, ids=ids, routing=job_id, source_includes=["id", "seq"])
        return {doc["_source"]["seq"]: doc["_source"]["id"] for doc in response["docs"] if doc.get("found")}

    async def _bulk_create(self, index: str, job_id: str, docs: dict[int, bytes], deadline: float) -> BulkOutcome:
        """``create`` each of ``docs`` (seq → the document serialized without its closing brace) in one request.
        The body is assembled as bytes: the same NDJSON as serializing each action and document, without a dict
        per line (index names and job ids never need escaping)."""
        action = b'{"create":{"_index":"' + index.encode() + b'","_id":"' + job_id.encode() + b":"
        body = b"".join(b'%s%d"}}\n%s,"seq":%d}\n' % (action, seq, doc, seq) for seq, doc in docs.items())
        timeout_s = max(0.5, deadline - time.monotonic())
        response = await self._es.options(request_timeout=timeout_s).bulk(
            operations=body,  # type: ignore[arg-type]  # bytes go to Elasticsearch as they are
            routing=job_id,
            filter_path="errors,items.*.status",  # items come in the order of the request
        )
        if not response.get("errors"):
            return BulkOutcome(created=set(docs))
        outcome = BulkOutcome()
        for seq, item in zip(docs, response["items"], strict=True):
            status = int(item["create"]["status"])
            if status < 300:
                outcome.created.add(seq)
            elif status == 409:
                outcome.existing.add(seq)
            else:
                outcome.failed.append(seq)
                outcome.fatal = outcome.fatal or status not in RETRYABLE_ITEM_STATUSES
        return outcome

    async def delete_lines(self, job_id: str, job_created_ms: int, seqs: Iterable[int]) -> None:
        """Remove these lines, briefly (a clean-up must not hold up the answer long); `BulkFailed` when one of
        them may still be there."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        operations = [orjson.dumps({"delete": {"_index": index, "_id": f"{job_id}:{seq}"}}) for seq in seqs]
        if not operations:
            return
        response = await self._es.options(request_timeout=CLEANUP_TIMEOUT_S).bulk(
            operations=cast(Sequence[dict[str, Any]], operations),
            routing=job_id,
            filter_path="errors,items.*.status",
        )
        if response.get("errors"):
            kept = [item for item in response["items"] if int(item["delete"]["status"]) not in (200, 404)]
            if kept:
                raise BulkFailed(f"{len(kept)} line(s) not deleted")
        await self._refreshes.refreshed(index, CLEANUP_TIMEOUT_S)  # gone from searches too (the next page is new)

    async def delete_seq_range(self, job_id: str, job_created_ms: int, first_seq: int, last_seq: int) -> None:
        """Remove every line of the job with a seq in ``first…last`` (an abandoned range: no line there was ever
        acknowledged), a page of seqs at a time (delete-by-query is a module the smallest distribution lacks);
        `BulkFailed` unless all of them are gone."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        seq_range = {"gte": first_seq, "lte": last_seq}
        await self.make_searchable(job_created_ms)  # whatever of the range reached the index, found by the search
        while True:
            response = await self._es.search(
                index=index,
                routing=job_id,
                query={"bool": {"filter": [{"term": {"job_id": job_id}}, {"range": {"seq": seq_range}}]}},
                sort=[{"seq": {"order": "asc"}}],
                size=CLEANUP_PAGE_LINES,
                track_total_hits=False,
                source=False,
                ignore_unavailable=True,
                filter_path="hits.hits.sort",
            )
            seqs = [int(hit["sort"][0]) for hit in response.get("hits", {}).get("hits", [])]
            if not seqs:
                return
            await self.delete_lines(job_id, job_created_ms, seqs)  # refreshed: the next page is new
            if len(seqs) < CLEANUP_PAGE_LINES:
                return

    async def highest_seq(self, job_id: str, job_created_ms: int) -> int:
        """The highest seq stored for the job (0 if none), acknowledged lines not yet searchable included."""
        await self.make_searchable(job_created_ms)
        response = await self._es.search(
            index=index_for(self._settings.index_prefix, job_created_ms),
            routing=job_id,
            query={"term": {"job_id": job_id}},
            sort=[{"seq": {"order": "desc"}}],
            size=1,
            track_total_hits=False,
            source=False,
            ignore_unavailable=True,
            filter_path="hits.hits.sort",
        )
        hits = response.get("hits", {}).get("hits", [])
        return int(hits[0]["sort"][0]) if hits else 0

    async def search(
        self,
        job_id: str,
        job_created_ms: int,
        visible_seq: int,
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
    ) -> LogPage:
        """One page in seq order; never a seq above ``visible_seq`` nor in an ``abandoned`` range; one index,
        one shard."""
        seq_range: dict[str, int] = {"lte": visible_seq}
        filters: list[dict[str, Any]] = [{"term": {"job_id": job_id}}, {"range": {"seq": seq_range}}]
        if query.levels:
            filters.append({"terms": {"level": list(query.levels)}})
        must: list[dict[str, Any]] = []
        if query.text:
            must.append(_message_query(query.text))
        must_not = [{"range": {"seq": {"gte": first, "lte": last}}} for first, last in abandoned]
        ascending = query.mode == "after"
        search_after = None if query.mode == "latest" else [query.seq]
        response = await self._es.search(
            index=index_for(self._settings.index_prefix, job_created_ms),
            routing=job_id,
            query={"bool": {"filter": filters, "must": must, "must_not": must_not}},
            sort=[{"seq": {"order": "asc" if ascending else "desc"}}],
            search_after=search_after,
            size=query.limit + 1,
            track_total_hits=False,
            source_includes=LINE_FIELDS,
            ignore_unavailable=True,
            filter_path="hits.hits._source",
        )
        hits = response.get("hits", {}).get("hits", [])
        has_more = len(hits) > query.limit
        lines = [_line_view(hit["_source"]) for hit in hits[: query.limit]]
        if not ascending:
            lines.reverse()
        return LogPage(lines, has_more)


def _message_query(text: str) -> dict[str, Any]:
    # simple_query_string never fails on syntax; with only the PHRASE and WHITESPACE operators enabled,
    # characters such as + - | * ( ) ~ are plain text, and `fields` pins it to the message.
    return {
        "simple_query_string": {
            "query": text,
            "fields": ["message"],
            "default_operator": "and",
            "flags": "PHRASE|WHITESPACE",
            "lenient": True,
        }
    }


def _line_view(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": source["id"],
        "seq": source["seq"],
        "level": source["level"],
        "message": source["message"],
        "source": source.get("source"),
        "metadata": source.get("metadata"),
        "loggedAt": source["logged_at"],
        "createdAt": source["created_at"],
    }
