"""Log lines in Elasticsearch: the index template, bulk writes and the seq-ordered reads.

Owns every index matching ``<prefix>-*`` and the composable template ``<prefix>``
(from ``index_templates/joblogs.json``, see ``JOBLENS_INDEX_TEMPLATES_DIR``). A job's lines live in the index of
the job's creation month (``<prefix>-YYYY.MM``), routed by job id (one shard), with ``_id = <jobId>:<seq>``
written by ``create`` so a retried bulk can never store a line twice.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import elastic_transport
import elasticsearch
import orjson
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import AsyncElasticsearch

from service.domain.errors import SearchTooLong
from service.domain.logs import LogQuery, SpaceLogQuery, in_ranges
from service.domain.search import QueryWord, WordMatcher, matcher_for
from service.settings import Settings
from service.stores.es_http import EsHttp

TEMPLATE_FILE_NAME = "joblogs.json"
RETRYABLE_ITEM_STATUSES = frozenset({429, 500, 502, 503, 504})
# A bulk request that failed as a whole (a dropped connection, an overloaded node) is retried for a moment: long
# enough for a blip, short enough that an outage answers 503 at once rather than holding every writer.
TRANSPORT_RETRY_S = 2.0
REQUEST_FAILURES = (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout, elasticsearch.ApiError)
CLEANUP_TIMEOUT_S = 5.0  # looking at and deleting what a failed append left: must not hold up its answer long
CLEANUP_PAGE_LINES = 1000
# Fields an index made from an older template lacks (its `message` stays analysed: `text_query` reads it there).
FIELDS_ADDED_SINCE_FIRST_TEMPLATE = ("job_name", "words", "joins")
LINE_FIELDS = ["id", "seq", "level", "message", "source", "metadata", "logged_at", "created_at"]
LINE_FIELDS_AND_WORDS = [*LINE_FIELDS, "words"]  # a line read by id with ``q``: has it the search fields?
# The query string of a page's search and of reads by id, after ``routing`` (what `AsyncElasticsearch` would send).
PAGE_PARAMETERS = urlencode(
    {"_source_includes": ",".join(LINE_FIELDS), "ignore_unavailable": "true", "filter_path": "hits.hits._source"}
)
BY_ID_PARAMETERS = urlencode(
    {"_source_includes": ",".join(LINE_FIELDS), "filter_path": "docs.found,docs._source,docs.error"}
)
BY_ID_WITH_WORDS_PARAMETERS = urlencode(
    {"_source_includes": ",".join(LINE_FIELDS_AND_WORDS), "filter_path": "docs.found,docs._source,docs.error"}
)
NO_NODE = NodeConfig("http", "-", 0)  # for an error raised here, not answered by a node


class MgetFailed(elasticsearch.ApiError):
    """A line could not be read by id (its shard is not available, say): a page without it would skip it."""

    def __init__(self, error: dict[str, Any]) -> None:
        # 503 like a shard without a copy to answer: the error middleware answers "retry later"
        meta = ApiResponseMeta(status=503, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=NO_NODE)
        super().__init__(str(error.get("type", "mget failed")), meta=meta, body=error)


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
class SpaceBatch:
    sources: list[dict[str, Any]]  # newest first; with ``job_id`` and ``job_name`` (absent in old indices)
    last: tuple[int, str, int] | None  # the sort values of the last one: where the next batch starts
    exhausted: bool


@dataclass(frozen=True, slots=True)
class StoredLine:
    """A line as stored, for rewriting it in place (`LogStore.rewrite_lines`)."""

    doc_id: str
    routing: str
    source: dict[str, Any]
    seq_no: int
    primary_term: int


@dataclass(frozen=True, slots=True)
class LogPage:
    lines: list[dict[str, Any]]  # ascending seq
    has_more: bool
    # around a seq: whether lines exist before the first and after the last of the page
    has_older: bool = False
    has_newer: bool = False


def index_template(settings: Settings) -> dict[str, Any]:
    """The template file with this deployment's prefix, shard and replica counts and refresh interval."""
    template: dict[str, Any] = orjson.loads((Path(settings.index_templates_dir) / TEMPLATE_FILE_NAME).read_bytes())
    template["index_patterns"] = [f"{settings.index_prefix}-*"]
    index_settings = template["template"]["settings"]["index"]
    index_settings["number_of_shards"] = settings.index_shards
    index_settings["number_of_replicas"] = settings.index_replicas
    index_settings["refresh_interval"] = f"{int(settings.index_refresh_interval_s * 1000)}ms"
    return template


@functools.lru_cache(maxsize=4096)  # every read names its job's index: the jobs being read now, computed once each
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
        # The hot reads (pages, lines by id) take the lean path; everything else goes through the client.
        self._http = EsHttp(es, settings.es_request_timeout_s)
        self._index_list: tuple[float, list[str]] | None = None  # (monotonic time read, names)

    async def close(self) -> None:
        """Close the lean path's kept-alive connections (the client itself is closed by whoever made it)."""
        await self._http.close()

    async def install_template(self) -> None:
        """Create or update the template, and add the fields it gained to the indices made before (their lines are
        written with those fields from now on); harmless to repeat."""
        template = index_template(self._settings)
        await self._es.indices.put_index_template(name=self._settings.index_prefix, **template)
        properties = template["template"]["mappings"]["properties"]
        await self._es.indices.put_mapping(
            index=f"{self._settings.index_prefix}-*",
            properties={name: properties[name] for name in FIELDS_ADDED_SINCE_FIRST_TEMPLATE},
            allow_no_indices=True,
        )

    async def index_lines(
        self,
        job_id: str,
        job_created_ms: int,
        job_name: str,
        first_seq: int,
        docs: Sequence[dict[str, Any]],
        deadline: float,
    ) -> None:
        """Index ``docs`` as seqs ``first_seq…``, durable (in the translog) on return and searchable after the
        next refresh (`make_searchable`); retries transient failures (of lines or of the whole request) until
        ``deadline`` (monotonic). Raises `BulkFailed` when that is not possible, and `SeqCollision` when some of
        these seqs already hold other lines."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        # Each document is serialized once, without its closing brace: a retry only appends the seq again.
        name_field = b',"job_name":' + orjson.dumps(job_name)
        pending = {first_seq + offset: orjson.dumps(doc)[:-1] + name_field for offset, doc in enumerate(docs)}
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

    async def indices(self) -> list[str]:
        """The names of this deployment's log indices, oldest month first."""
        found = await self._es.indices.get(index=f"{self._settings.index_prefix}-*", allow_no_indices=True)
        return sorted(found)

    async def lines_to_upgrade(self, index: str, size: int) -> list[StoredLine]:
        """Up to ``size`` lines of ``index`` written before the current template (they lack ``job_name``), with
        what a conditional rewrite needs."""
        response = await self._es.search(
            index=index,
            query={"bool": {"must_not": [{"exists": {"field": "job_name"}}]}},
            sort=["_doc"],
            size=size,
            seq_no_primary_term=True,
            track_total_hits=False,
            filter_path="hits.hits._id,hits.hits._routing,hits.hits._source,hits.hits._seq_no,hits.hits._primary_term",
        )
        return [
            StoredLine(hit["_id"], hit["_routing"], hit["_source"], hit["_seq_no"], hit["_primary_term"])
            for hit in response.get("hits", {}).get("hits", [])
        ]

    async def rewrite_lines(self, index: str, lines: Sequence[StoredLine]) -> tuple[int, int]:
        """Write these lines again with their new ``_source``, each only if unchanged since it was read (a line
        the janitor deleted meanwhile stays deleted). Returns (rewritten, skipped); searchable on return."""
        operations: list[bytes] = []
        for line in lines:
            action: dict[str, Any] = {"_index": index, "_id": line.doc_id, "routing": line.routing}
            action |= {"if_seq_no": line.seq_no, "if_primary_term": line.primary_term}
            operations += [orjson.dumps({"index": action}), orjson.dumps(line.source)]
        if not operations:
            return 0, 0
        response = await self._es.bulk(
            operations=cast(Sequence[dict[str, Any]], operations), filter_path="errors,items.*.status"
        )
        statuses = [int(item["index"]["status"]) for item in response["items"]]
        failed = [status for status in statuses if status >= 300 and status not in (404, 409)]
        if failed:
            raise BulkFailed(f"{len(failed)} line(s) of {index} not rewritten (status {failed[0]})")
        await self._es.indices.refresh(index=index)
        rewritten = sum(status < 300 for status in statuses)
        return rewritten, len(statuses) - rewritten

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
        one shard. With ``q``, Elasticsearch finds candidates and `WordMatcher` keeps the lines that match
        exactly: candidates are read in batches until the page is full or none is left."""
        if query.mode == "around":
            return await self._around(job_id, job_created_ms, visible_seq, abandoned, query)
        matcher = matcher_for(query.words)
        kept = await self._matching_sources(job_id, job_created_ms, visible_seq, abandoned, query, matcher)
        return _page(kept, query, matcher)

    async def tail(
        self,
        job_id: str,
        job_created_ms: int,
        visible_seq: int,
        durable_seq: int,
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
    ) -> LogPage | None:
        """An ``after`` page up to ``durable_seq``, without a refresh: the lines up to ``visible_seq`` are searched,
        those above it (acknowledged, perhaps not searchable yet) are fetched by id with a realtime ``_mget``, which
        sees every acknowledged write on any copy. Levels and ``q`` are decided here for those (`WordMatcher` is
        exact). The caller keeps ``durable_seq - max(query.seq, visible_seq)`` within `UNSEARCHABLE_FETCH_MAX`. None
        when those lines cannot be decided here (see `_unsearchable_sources`): the caller refreshes and searches."""
        matcher = matcher_for(query.words)
        wanted = query.limit + 1
        kept: list[dict[str, Any]] = []
        if query.seq < visible_seq:
            kept = await self._matching_sources(job_id, job_created_ms, visible_seq, abandoned, query, matcher)
        if len(kept) < wanted:
            after_seq = max(query.seq, visible_seq)
            unsearchable = await self._unsearchable_sources(
                job_id, job_created_ms, after_seq, durable_seq, abandoned, query, matcher, wanted - len(kept)
            )
            if unsearchable is None:
                return None
            kept += unsearchable
        return _page(kept, query, matcher)

    async def _matching_sources(
        self,
        job_id: str,
        job_created_ms: int,
        visible_seq: int,
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
        matcher: WordMatcher | None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit + 1`` matching sources in the page's direction (ascending for ``after``), searched."""
        ascending = query.mode == "after"
        search_after = None if query.mode == "latest" else query.seq
        wanted = query.limit + 1
        kept: list[dict[str, Any]] = []
        batch = wanted
        # Candidates are checked unless they are known to match (decided once per read, not per candidate).
        check = None if matcher is None or matcher.candidates_exact else matcher.matches
        while True:
            sources = await self._page_sources(
                job_id, job_created_ms, {"lte": visible_seq}, abandoned, query, ascending, search_after, batch
            )
            kept.extend(sources if check is None else (source for source in sources if check(source["message"])))
            if len(kept) >= wanted or len(sources) < batch:
                return kept[:wanted]
            search_after = sources[-1]["seq"]
            batch = CANDIDATE_BATCH  # what was left out was not a match: read further in bigger steps

    async def _unsearchable_sources(
        self,
        job_id: str,
        job_created_ms: int,
        after_seq: int,
        through_seq: int,
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
        matcher: WordMatcher | None,
        wanted: int,
    ) -> list[dict[str, Any]] | None:
        """Up to ``wanted`` matching sources with a seq in ``after_seq < seq <= through_seq`` outside the abandoned
        ranges, ascending, read by id. Without a filter the first ``wanted`` seqs are enough (each holds a line,
        unless a failed append's line was removed), so only those are asked for first. None when ``q`` cannot be
        decided as a search would: a line without the search fields (rewritten by an older joblens) is found by
        whole standard tokens only (see `text_query`), which only Elasticsearch's analyzer knows."""
        seqs = [seq for seq in range(after_seq + 1, through_seq + 1) if not in_ranges(seq, abandoned)]
        filtered = bool(query.levels) or matcher is not None
        first = seqs if filtered else seqs[:wanted]
        fields = LINE_FIELDS if matcher is None else LINE_FIELDS_AND_WORDS
        sources = await self._sources_by_seq(job_id, job_created_ms, first, fields)
        if len(sources) < wanted and len(first) < len(seqs):
            sources += await self._sources_by_seq(job_id, job_created_ms, seqs[len(first) :], fields)
        if matcher is not None and any("words" not in source for source in sources):
            return None
        return _matching(sources, query, matcher)[:wanted]

    async def _sources_by_seq(
        self, job_id: str, job_created_ms: int, seqs: Sequence[int], fields: list[str]
    ) -> list[dict[str, Any]]:
        """The ``_source`` of the job's lines at these seqs, in their order, by a realtime ``_mget`` (one shard):
        a seq without a line (a failed append's line removed) is left out, and so is every one if the index is
        gone (retention), as a search would. Any other failure raises: leaving a line out would skip it."""
        if not seqs:
            return []
        index = index_for(self._settings.index_prefix, job_created_ms)
        parameters = BY_ID_PARAMETERS if fields is LINE_FIELDS else BY_ID_WITH_WORDS_PARAMETERS
        target = f"/{quote(index, safe='')}/_mget?routing={quote(job_id, safe='')}&{parameters}"
        response = await self._http.post(target, orjson.dumps({"ids": [f"{job_id}:{seq}" for seq in seqs]}))
        sources: list[dict[str, Any]] = []
        for doc in response.get("docs", []):
            if "error" in doc:
                if doc["error"].get("type") == "index_not_found_exception":
                    continue
                raise MgetFailed(doc["error"])
            if doc.get("found"):
                sources.append(doc["_source"])
        return sources

    async def _page_sources(
        self,
        job_id: str,
        job_created_ms: int,
        seq_range: dict[str, int],
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
        ascending: bool,
        search_after: int | None,
        size: int,
    ) -> list[dict[str, Any]]:
        """The ``_source`` of up to ``size`` candidate lines in ``seq_range`` after (or before) ``search_after``,
        in seq order."""
        body: dict[str, Any] = {
            "query": job_lines_query(job_id, seq_range, abandoned, query.levels, query.words),
            "sort": [{"seq": {"order": "asc" if ascending else "desc"}}],
            "size": size,
            "track_total_hits": False,
        }
        if search_after is not None:
            body["search_after"] = [search_after]
        index = index_for(self._settings.index_prefix, job_created_ms)
        target = f"/{quote(index, safe='')}/_search?routing={quote(job_id, safe='')}&{PAGE_PARAMETERS}"
        response = await self._http.post(target, orjson.dumps(body))
        return [hit["_source"] for hit in response.get("hits", {}).get("hits", [])]

    async def _around(
        self,
        job_id: str,
        job_created_ms: int,
        visible_seq: int,
        abandoned: Sequence[tuple[int, int]],
        query: LogQuery,
    ) -> LogPage:
        """The ``limit`` lines centred on ``query.seq`` (included when visible): one request of two searches
        (the lines at or before it, newest first, and those after it), one shard."""
        index = index_for(self._settings.index_prefix, job_created_ms)
        older = job_lines_query(job_id, {"lte": min(query.seq, visible_seq)}, abandoned, query.levels, ())
        newer = job_lines_query(job_id, {"gt": query.seq, "lte": visible_seq}, abandoned, query.levels, ())
        common = {"size": query.limit + 1, "track_total_hits": False, "_source": {"includes": LINE_FIELDS}}
        header = {"index": index, "routing": job_id, "ignore_unavailable": True}
        response = await self._es.msearch(
            searches=[
                header,
                {**common, "query": older, "sort": [{"seq": {"order": "desc"}}]},
                header,
                {**common, "query": newer, "sort": [{"seq": {"order": "asc"}}]},
            ],
            filter_path="responses.status,responses.hits.hits._source,responses.error",  # status: no answer is dropped
        )
        answers = response.get("responses", [])
        for answer in answers:
            if "error" in answer:
                raise elasticsearch.ApiError("msearch failed", meta=response.meta, body=answer["error"])
        before, after = ([hit["_source"] for hit in answer.get("hits", {}).get("hits", [])] for answer in answers)
        # Centred: half the page on each side, the rest taken from the other side when one runs short.
        after_count = min(len(after), query.limit // 2)
        before_count = min(len(before), query.limit - after_count)
        after_count = min(len(after), query.limit - before_count)
        kept = before[:before_count][::-1] + after[:after_count]
        lines = [line_view(source, None, query.highlight) for source in kept]
        return LogPage(
            lines,
            has_more=len(before) > before_count or len(after) > after_count,
            has_older=len(before) > before_count,
            has_newer=len(after) > after_count,
        )

    async def export_batches(
        self, job_id: str, job_created_ms: int, visible_seq: int, abandoned: Sequence[tuple[int, int]], query: LogQuery
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every matching line up to ``visible_seq`` in ascending seq, in batches. The job's seqs are cut into
        windows of `EXPORT_BATCH` (a window holds at most that many lines: seqs are unique), and
        `EXPORT_WINDOWS_IN_FLIGHT` of them are fetched at once while the caller writes the oldest: Elasticsearch
        works on the next pages while the service encodes this one."""
        matcher = matcher_for(query.words)
        starts = iter(range(1, visible_seq + 1, EXPORT_BATCH))

        def fetch(start: int) -> asyncio.Task[list[dict[str, Any]]]:
            window = {"gte": start, "lte": min(visible_seq, start + EXPORT_BATCH - 1)}
            return asyncio.create_task(
                self._page_sources(job_id, job_created_ms, window, abandoned, query, True, None, EXPORT_BATCH)
            )

        pending = collections.deque(fetch(start) for start in itertools.islice(starts, EXPORT_WINDOWS_IN_FLIGHT))
        try:
            while pending:
                sources = await pending.popleft()
                if (start := next(starts, None)) is not None:
                    pending.append(fetch(start))
                kept = [
                    line_view(source, None, False)
                    for source in sources
                    if matcher is None or matcher.verifies(source["message"])
                ]
                if kept:
                    yield kept
        finally:
            for task in pending:
                task.cancel()

    async def search_space(
        self, space_id: str, query: SpaceLogQuery, after: tuple[int, str, int] | None, size: int, timeout_s: float
    ) -> SpaceBatch:
        """Up to ``size`` candidates of a space's lines, newest first (reception time, then job and seq), after
        ``after``. Only indices of months up to the window's end are named (a job's lines live in the index of
        its creation month, so an older month may still hold recent lines); of those, Elasticsearch skips every
        shard whose reception times lie outside the window without searching it (``pre_filter_shard_size=1``).
        Raises `SearchTooLong` when the search did not finish within ``timeout_s``."""
        indices = await self._indices_up_to(query.until_ms)
        if not indices:
            return SpaceBatch([], None, exhausted=True)
        if after is None or after == query.position:
            # Read-your-writes: acknowledged lines are durable, not yet searchable (see `make_searchable`); a
            # refresh of nothing new is nearly free, and concurrent searches share one.
            await self._refreshes.refreshed(",".join(indices), timeout_s)
        filters: list[dict[str, Any]] = [
            {"term": {"space_id": space_id}},
            {"range": {"created_at": {"gte": query.since_ms, "lte": query.until_ms, "format": "epoch_millis"}}},
        ]
        if query.levels:
            filters.append({"terms": {"level": list(query.levels)}})
        if query.job_name is not None:
            filters.append({"term": {"job_name": query.job_name}})
        if query.words:
            filters.append(text_query(query.words))
        try:
            response = await self._es.options(request_timeout=timeout_s + 2).search(
                index=",".join(indices),
                query={"bool": {"filter": filters}},
                sort=[{"created_at": {"order": "desc"}}, {"job_id": {"order": "desc"}}, {"seq": {"order": "desc"}}],
                search_after=list(after) if after is not None else None,
                size=size,
                track_total_hits=False,
                source_includes=[*LINE_FIELDS, "job_id", "job_name"],
                ignore_unavailable=True,
                pre_filter_shard_size=1,
                timeout=f"{max(1, int(timeout_s * 1000))}ms",
                filter_path="timed_out,hits.hits._source,hits.hits.sort",
            )
        except elastic_transport.ConnectionTimeout as exc:
            raise SearchTooLong() from exc
        if response.get("timed_out"):
            raise SearchTooLong()
        hits = response.get("hits", {}).get("hits", [])
        last = tuple(hits[-1]["sort"]) if hits else None
        return SpaceBatch(
            [hit["_source"] for hit in hits],
            (int(last[0]), str(last[1]), int(last[2])) if last else None,
            exhausted=len(hits) < size,
        )

    async def _indices_up_to(self, until_ms: int) -> list[str]:
        """The deployment's indices of months up to ``until_ms``'s, from a list at most a few seconds old (a month's
        index appears with its first line; a line of it written since is at most that much older than the list)."""
        now = time.monotonic()
        if self._index_list is None or now - self._index_list[0] > INDEX_LIST_MAX_AGE_S:
            self._index_list = (now, await self.indices())
        last_month = index_for(self._settings.index_prefix, until_ms)
        return [index for index in self._index_list[1] if index <= last_month]

    async def delete_index(self, index: str) -> bool:
        """Delete one of this deployment's monthly indices by its exact name (retention): True if this call deleted
        it, False if it was gone already (another instance's pass). Refuses any other name, so a pattern or another
        deployment's index can never be deleted through here."""
        prefix, _, month = index.rpartition("-")
        year, dot, month_number = month.partition(".")
        is_month = dot == "." and len(year) == 4 and len(month_number) == 2 and (year + month_number).isdecimal()
        if prefix != self._settings.index_prefix or not is_month or not month.isascii():
            raise ValueError(f"not a log index of this deployment: {index!r}")
        try:
            # expand_wildcards=none: the name is taken as it is, never as a pattern
            await self._es.indices.delete(index=index, expand_wildcards="none")
        except elasticsearch.NotFoundError:
            return False
        finally:
            self._index_list = None  # a search across a space must not name it any more
        return True


INDEX_LIST_MAX_AGE_S = 5.0
CANDIDATE_BATCH = 1000
# A tail read fetches at most this many seqs by id (one `_mget`): lines acknowledged but perhaps not searchable yet.
# A longer run of them (nobody read for a while, or a burst) is made searchable by a refresh instead.
UNSEARCHABLE_FETCH_MAX = 1000
EXPORT_BATCH = 5000
EXPORT_WINDOWS_IN_FLIGHT = 3


def job_lines_query(
    job_id: str,
    seq_range: dict[str, int],
    abandoned: Sequence[tuple[int, int]],
    levels: Sequence[str],
    words: Sequence[QueryWord],
) -> dict[str, Any]:
    """The lines of one job in ``seq_range``, outside the abandoned ranges, of these levels, that may match every
    one of ``words``."""
    filters: list[dict[str, Any]] = [{"term": {"job_id": job_id}}, {"range": {"seq": seq_range}}]
    if levels:
        filters.append({"terms": {"level": list(levels)}})
    if words:
        filters.append(text_query(words))
    must_not = [{"range": {"seq": {"gte": first, "lte": last}}} for first, last in abandoned]
    return {"bool": {"filter": filters, "must_not": must_not}}


def text_query(words: Sequence[QueryWord]) -> dict[str, Any]:
    """Candidates for lines where every word appears (see `service.domain.search`): on the ``words`` and
    ``joins`` fields of current indices, or on the analysed ``message`` of indices made before those fields
    existed (``message`` is not indexed in current ones, and a lenient query on it finds nothing there)."""
    legacy = {
        "simple_query_string": {
            "query": " ".join(f'"{word.text}"' if " " in word.text else word.text for word in words),
            "fields": ["message"],
            "default_operator": "and",
            "flags": "PHRASE|WHITESPACE",
            "lenient": True,
        }
    }
    current = {"bool": {"filter": [_word_query(word) for word in words]}}
    return {"bool": {"should": [current, legacy], "minimum_should_match": 1}}


def _word_query(word: QueryWord) -> dict[str, Any]:
    tokens = word.tokens
    whole = {"term": {"words": tokens[0]}} if len(tokens) == 1 else {"match_phrase": {"words": " ".join(tokens)}}
    if not word.edges_may_split:
        return whole
    if len(tokens) == 1:  # a letter run: all of a line's run, or some of its camelCase parts
        inside_runs: list[dict[str, Any]] = [{"term": {"joins": tokens[0]}}]
        if word.join_windows:  # or some of a run too long for `joins` to hold every run of its parts
            inside_runs.append({"bool": {"filter": [{"term": {"joins": window}} for window in word.join_windows]}})
        return {"bool": {"should": [whole, *inside_runs], "minimum_should_match": 1}}
    # An end may be a camelCase part of a longer run (``Service.start`` in ``AllocationService.start``): the inside
    # of the word in order, its ends anywhere, at least one of them among the parts; `WordMatcher` decides.
    first, last = tokens[0], tokens[-1]
    inside = [{"match_phrase": {"words": " ".join(tokens[1:-1])}}] if len(tokens) > 2 else []
    split_ends = []
    if first.isalpha():
        split_ends.append([{"term": {"joins": first}}, _token_anywhere(last)])
    if last.isalpha():
        split_ends.append([_token_anywhere(first), {"term": {"joins": last}}])
    split = [{"bool": {"filter": inside + ends}} for ends in split_ends]
    return {"bool": {"should": [whole, *split], "minimum_should_match": 1}}


def _token_anywhere(token: str) -> dict[str, Any]:
    if not token.isalpha():
        return {"term": {"words": token}}
    return {"bool": {"should": [{"term": {"words": token}}, {"term": {"joins": token}}], "minimum_should_match": 1}}


def _page(kept: list[dict[str, Any]], query: LogQuery, matcher: WordMatcher | None) -> LogPage:
    """Up to ``limit + 1`` sources in the page's direction as a page in ascending seq."""
    lines = [line_view(source, matcher, query.highlight) for source in kept[: query.limit]]
    if query.mode != "after":
        lines.reverse()
    return LogPage(lines, has_more=len(kept) > query.limit)


def _matching(sources: list[dict[str, Any]], query: LogQuery, matcher: WordMatcher | None) -> list[dict[str, Any]]:
    """Of sources read by id (not found by a query), those of ``query``'s levels that match its words exactly."""
    levels = query.levels
    return [
        source
        for source in sources
        if (not levels or source["level"] in levels) and (matcher is None or matcher.matches(source["message"]))
    ]


def line_view(source: dict[str, Any], matcher: WordMatcher | None, highlight: bool) -> dict[str, Any]:
    line = {
        "id": source["id"],
        "seq": source["seq"],
        "level": source["level"],
        "message": source["message"],
        "source": source.get("source"),
        "metadata": source.get("metadata"),
        "loggedAt": source["logged_at"],
        "createdAt": source["created_at"],
    }
    if highlight:
        line["highlights"] = matcher.highlights(source["message"]) if matcher is not None else []
    return line
