"""P1-P6 and M: each builds its plan, has the load generator (or wrk) run it, and turns the result into rows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bench import wrk
from bench.es import Es
from bench.loadgen import (
    BulkTemplate,
    Call,
    DirectWriters,
    FreshnessPlan,
    IngestPlan,
    LatencyPlan,
    LatencyResult,
    StreamPhaseResult,
    StreamPlan,
    StreamResult,
    ThroughputPlan,
    order,
    run_freshness,
    run_ingest,
    run_latency,
    run_streams,
    run_throughput,
)
from bench.prepare import P1_LINES, P1_WRITERS, SERVICE_ENV, Ctx, ExportCapture, scratch_index
from bench.procs import Proc, machine_cpu_s, start_service, wait_http, wait_logged
from bench.profiles import FULL
from bench.quality.scenario import q_estimate, q_quality
from bench.report import RESULTS_DIR, Row
from bench.stats import percentile, ratio

Details = dict[str, Any]
Outcome = tuple[list[Row], Details]
CLIENTS = (1, 16)
WRK_CONNECTIONS = 16
FRESH_WRITERS = 4
FRESH_LINES = 10
FRESH_POLL_S = 0.01
FRESH_POLL_P95_MS = 150.0
FRESH_STREAM_P95_MS = 100.0
FANOUT_WRITERS = 4
FANOUT_POST_INTERVAL_S = 0.1  # per writer: at most 40 appends/s over the 100 jobs (one per job every 2.5 s)
FANOUT_OPEN_CONCURRENCY = 50
FANOUT_SEARCH_RATIO = 1.2
EXPORT_IN_FLIGHT = 3  # as `service.stores.es_logs.EXPORT_WINDOWS_IN_FLIGHT`


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    run: Callable[[Ctx], Awaitable[Outcome]]
    estimate_s: Callable[[Ctx], float]  # a generous bound, checked against the time left


def _with_base(call: Call, base_url: str) -> Call:
    return dataclasses.replace(call, url=base_url + call.url)


def _latency_summary(ms: list[float]) -> dict[str, float | int]:
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms, default=math.nan),
    }


def _latency_budget(ctx: Ctx, sides: int) -> float:
    return sides * (ctx.profile.rounds + 1) * ctx.profile.max_round_s + 30.0


async def _latency(ctx: Ctx, plan: LatencyPlan) -> LatencyResult:
    result = await ctx.loadgen.run(run_latency, plan, _latency_budget(ctx, len(plan.sides)))
    if any(result.errors.values()):
        ctx.notes.append(f"request errors {result.errors} (concurrency {plan.concurrency})")
    return result


@contextlib.asynccontextmanager
async def _rss_peak(proc: Proc, into: list[float]) -> AsyncIterator[None]:
    """Samples the process's RSS every 100 ms while the block runs; ``into`` gets every sample."""

    async def sample() -> None:
        while True:
            into.append(proc.rss_mib())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --------------------------------------------------------------------------- P2, P3 and M: log reads


def _read_plan(ctx: Ctx, pairs: tuple[tuple[Call, Call], ...], samples: int, clients: int) -> LatencyPlan:
    service = tuple(_with_base(call, ctx.service.base_url) for call, _ in pairs)
    direct = tuple(es for _, es in pairs)
    p = ctx.profile
    return LatencyPlan((("service", service), ("es", direct)), samples, clients, p.rounds, p.warmup, p.max_round_s)


def _pair_rows(
    row_id: str, label: str, result: LatencyResult, targets: dict[int, tuple[str, Callable[[float, float], bool]]]
) -> list[Row]:
    service, direct = result.ms["service"], result.ms["es"]
    rows = []
    for q in (50, 99):
        s, e = percentile(service, q), percentile(direct, q)
        target, check = targets.get(q, ("", None))
        rows.append(
            Row(
                row_id,
                f"{label} p{q}",
                "ms",
                s,
                e,
                delta=s - e,
                ratio=ratio(s, e),
                target=target,
                ok=None if check is None else check(s, e),
                samples=f"{len(service)}+{len(direct)}",
            )
        )
    return rows


async def p2_tail(ctx: Ctx) -> Outcome:
    rows: list[Row] = []
    details: Details = {}
    rss: list[float] = []
    idle_rss = ctx.service.rss_mib()
    for clients, samples in zip(CLIENTS, ctx.profile.p2_samples, strict=True):
        plan = _read_plan(ctx, ctx.captures.tail, samples, clients)
        async with _rss_peak(ctx.service, rss):
            result = await _latency(ctx, plan)
        targets: dict[int, tuple[str, Callable[[float, float], bool]]] = {}
        if clients == 16:
            targets = {50: ("≤ ES+2 ms", lambda s, e: s <= e + 2.0), 99: ("≤ 25 ms", lambda s, e: s <= 25.0)}
        rows += _pair_rows("P2", f"tail after=N limit=200, {clients} cl.", result, targets)
        details[f"clients_{clients}"] = {side: _latency_summary(ms) for side, ms in result.ms.items()}
    rows.append(Row("M", "service RSS under P2 load (peak)", "MiB", max(rss, default=math.nan), samples=f"{len(rss)}"))
    details["rss_mib"] = {"idle_before": idle_rss, "peak": max(rss, default=math.nan), "samples": len(rss)}
    return rows, details


async def p3_search(ctx: Ctx) -> Outcome:
    """The service's search against the same ES request sent straight to Elasticsearch, and for reference
    a bare aiohttp handler that forwards that request as it is (`bench.bare`, on the lean connection): the second HTTP
    hop alone, what any aiohttp service in front of Elasticsearch pays before doing anything."""
    rows: list[Row] = []
    details: Details = {}
    within = ("≤ 1.20x", lambda s, e: s <= 1.2 * e)
    for clients, samples in zip(CLIENTS, ctx.profile.p3_samples, strict=True):
        plan = _read_plan(ctx, ctx.captures.search, samples, clients)
        forwarded = tuple(_forwarded(ctx, es) for _, es in ctx.captures.search)
        plan = dataclasses.replace(plan, sides=(*plan.sides, ("bare", forwarded)))
        result = await _latency(ctx, plan)
        rows += _pair_rows("P3", f"search q=2 words+level, {clients} cl.", result, {50: within, 99: within})
        rows.append(_floor_row(f"  bare aiohttp handler forwarding it, {clients} cl. p50", result))
        details[f"clients_{clients}"] = {side: _latency_summary(ms) for side, ms in result.ms.items()}
    return rows, details


def _forwarded(ctx: Ctx, es_call: Call) -> Call:
    """The ES call sent to the bare forwarder instead (`bench.bare`), which passes it on unchanged."""
    return dataclasses.replace(es_call, url=ctx.bare.base_url + "/forward" + es_call.url[len(ctx.es_url) :])


def _floor_row(label: str, result: LatencyResult) -> Row:
    bare, direct = percentile(result.ms["bare"], 50), percentile(result.ms["es"], 50)
    samples = f"{len(result.ms['bare'])}+{len(result.ms['es'])}"
    return Row("P3", label, "ms", bare, direct, delta=bare - direct, ratio=ratio(bare, direct), samples=samples)


async def s_space_search(ctx: Ctx) -> Outcome:
    """A search across the jobs of the log space (two words, a level, a week), against the first ES `_search`
    each one caused: what Elasticsearch does alone for it."""
    result = await _latency(ctx, _read_plan(ctx, ctx.captures.space, ctx.profile.space_samples, 1))
    rows = _pair_rows("S", "space search q=2 words+level, 7 days, 1 cl.", result, {})
    return rows, {side: _latency_summary(ms) for side, ms in result.ms.items()}


async def e_export(ctx: Ctx) -> Outcome:
    """Whole-job exports (NDJSON) of the largest jobs, against ES answering the service's own page requests for
    the same job (only the seq window moves), both read to the end in this process."""
    seconds = {"service": 0.0, "es": 0.0}
    lines = {"service": 0, "es": 0}
    async with aiohttp.ClientSession() as session:
        for round_number in range(ctx.profile.rounds):
            for side in order(("service", "es"), round_number):
                for capture in ctx.captures.export:
                    started = time.perf_counter()
                    if side == "service":
                        got = await _export_through_service(session, ctx.service.base_url, capture)
                    else:
                        got = await _export_from_es(session, capture)
                    seconds[side] += time.perf_counter() - started
                    if got != capture.lines:
                        raise RuntimeError(f"{side} export gave {got} lines, expected {capture.lines}")
                    lines[side] += got
    rate = {side: lines[side] / seconds[side] for side in seconds}
    samples = f"{ctx.profile.rounds}x{len(ctx.captures.export)}"
    row = Row(
        "E",
        "export ndjson, largest jobs",
        "lines/s",
        rate["service"],
        rate["es"],
        ratio=ratio(rate["service"], rate["es"]),
        target="≥ 100,000",
        ok=rate["service"] >= 100_000,
        samples=samples,
    )
    return [row], {"lines": lines, "seconds": seconds}


async def _export_through_service(session: aiohttp.ClientSession, base_url: str, capture: ExportCapture) -> int:
    count = 0
    async with session.get(base_url + capture.path, headers=dict(capture.headers)) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(1 << 16):
            count += chunk.count(b"\n")
    return count


async def _export_from_es(session: aiohttp.ClientSession, capture: ExportCapture) -> int:
    """The service's own window requests (`LogStore.export_batches`: seq windows of one page, a few in flight),
    each window's ``seq`` range moved in the recorded body."""
    page = capture.first_page
    recorded = orjson.loads(page.body or b"{}")
    size = int(recorded["size"])

    async def window(start: int) -> int:
        body = orjson.loads(page.body or b"{}")
        for clause in body["query"]["bool"]["filter"]:
            if "range" in clause and "seq" in clause["range"]:
                clause["range"]["seq"] = {"gte": start, "lte": start + size - 1}
        async with session.request(
            page.method, page.url, data=orjson.dumps(body), headers=dict(page.headers)
        ) as answer:
            return len(orjson.loads(await answer.read()).get("hits", {}).get("hits", []))

    starts = list(range(1, capture.lines + 1, size))
    count = 0
    for group in range(0, len(starts), EXPORT_IN_FLIGHT):
        count += sum(await asyncio.gather(*(window(start) for start in starts[group : group + EXPORT_IN_FLIGHT])))
    return count


def reads_estimate(samples: tuple[int, int], ms_at_one: float, rps_at_many: float, ctx: Ctx) -> float:
    """Both sides, warm-ups included, at ``ms_at_one`` per request (1 client) and ``rps_at_many`` (16 clients):
    what the full dataset gives on 2 cores (the quick one is faster)."""
    one = (samples[0] + ctx.profile.warmup) * ms_at_one / 1000.0
    many = (samples[1] + ctx.profile.warmup) / rps_at_many
    return 2 * (one + many) + 3.0


# --------------------------------------------------------------------------- P1: ingestion


async def p1_ingest(ctx: Ctx) -> Outcome:
    p = ctx.profile
    base = ctx.service.base_url
    urls = tuple(f"{base}/api/v1/jobs/{job}/logs" for job in ctx.run.writers)
    service = dataclasses.replace(ctx.captures.ingest, urls=urls)
    # The baseline is the service's own recorded _bulk, sent straight to Elasticsearch: acknowledged once durable,
    # without a refresh (the real limit). The same with refresh=wait_for is kept for reference (what an append
    # that waits for the scheduled refresh can reach).
    planned_ms = int(time.time() * 1000)
    direct = DirectWriters(ctx.captures.bulk, P1_LINES, planned_ms)
    waiting = DirectWriters(_with_query(ctx.captures.bulk, "refresh=wait_for"), P1_LINES, planned_ms + 1)
    sides = (("service", service), ("es", direct), ("es-wait-for", waiting))
    plan = IngestPlan(sides, P1_WRITERS, P1_LINES, p.p1_round_s, p.rounds, 1, 400)
    result = await ctx.loadgen.run(run_ingest, plan, p1_estimate(ctx) * 1.5 + 60)
    if any(result.errors.values()):
        ctx.notes.append(f"P1 errors {result.errors}")
    s_rate = result.lines["service"] / result.seconds["service"]
    e_rate = result.lines["es"] / result.seconds["es"]
    w_rate = result.lines["es-wait-for"] / result.seconds["es-wait-for"]
    s_ms, e_ms, w_ms = result.call_ms["service"], result.call_ms["es"], result.call_ms["es-wait-for"]
    n = f"{len(s_ms)}+{len(e_ms)} calls"
    rows = [
        Row("P1", "ingest 500-line batches, 4 writers", "lines/s", s_rate, e_rate, None, ratio(s_rate, e_rate), "≥ 0.80x", s_rate >= 0.8 * e_rate, n),  # noqa: E501
        Row("P1", "  same vs _bulk refresh=wait_for (reference)", "lines/s", s_rate, w_rate, None, ratio(s_rate, w_rate), samples=f"{len(s_ms)}+{len(w_ms)} calls"),  # noqa: E501
        Row("P1", "ingest call latency p50", "ms", percentile(s_ms, 50), percentile(e_ms, 50), percentile(s_ms, 50) - percentile(e_ms, 50), ratio(percentile(s_ms, 50), percentile(e_ms, 50)), samples=n),  # noqa: E501
    ]  # fmt: skip
    details = {
        "lines": result.lines,
        "seconds": result.seconds,
        "errors": result.errors,
        "call_ms": {side: _latency_summary(ms) for side, ms in result.call_ms.items()},
    }
    return rows, details


def _with_query(template: BulkTemplate, parameter: str) -> BulkTemplate:
    separator = "&" if "?" in template.path_qs else "?"
    return dataclasses.replace(template, path_qs=f"{template.path_qs}{separator}{parameter}")


def _freshness_rows(reader: str, seen_ms: list[float], target_p95_ms: float) -> list[Row]:
    """P6's p50 and p95 rows: POST start → the line seen by ``reader``."""
    n = f"{len(seen_ms)} batches"
    p50, p95 = percentile(seen_ms, 50), percentile(seen_ms, 95)
    label = f"freshness POST start → {reader} sees it"
    return [
        Row("P6", f"{label} p50", "ms", p50, samples=n),
        Row("P6", f"{label} p95", "ms", p95, target=f"≤ {target_p95_ms:.0f} ms", ok=p95 <= target_p95_ms, samples=n),
    ]


def p1_estimate(ctx: Ctx) -> float:
    return 2 * ctx.profile.rounds * (ctx.profile.p1_round_s + 1.0) + 2 * 1.5


# --------------------------------------------------------------------------- P4: progress and get job


async def p4_meta(ctx: Ctx) -> Outcome:
    job_url = f"/api/v1/jobs/{ctx.run.meta}"
    endpoints = {"progress": job_url + "/progress", "get job": job_url}
    if ctx.wrk is None:
        return await _p4_python(ctx, endpoints)
    headers = {"x-api-key": ctx.run.space.api_key}
    rps: dict[tuple[str, str], list[float]] = {}
    latency: dict[tuple[str, str], list[float]] = {}
    targets = {"service": ctx.service.base_url, "bare": ctx.bare.base_url}
    warm_path = next(iter(endpoints.values()))
    for base in targets.values():  # warm-up: each process once
        await asyncio.to_thread(wrk.run, ctx.wrk, base + warm_path, headers, 1, WRK_CONNECTIONS)
    errors = 0
    for number in range(ctx.profile.rounds):
        for endpoint, path in endpoints.items():
            for side in order(list(targets), number):
                got = await asyncio.to_thread(
                    wrk.run, ctx.wrk, targets[side] + path, headers, ctx.profile.p4_round_s, WRK_CONNECTIONS
                )
                rps.setdefault((endpoint, side), []).append(got.requests_per_s)
                latency.setdefault((endpoint, side), []).append(got.p50_ms)
                errors += got.errors
    if errors:
        ctx.notes.append(f"P4: {errors} wrk errors")
    return _p4_rows(ctx, rps, latency, "wrk")


async def _p4_python(ctx: Ctx, endpoints: dict[str, str]) -> Outcome:
    """Without wrk: the async client, fixed durations, same alternation."""
    headers = (("x-api-key", ctx.run.space.api_key),)
    rps: dict[tuple[str, str], list[float]] = {}
    p = ctx.profile
    for endpoint, path in endpoints.items():
        sides = (
            ("service", Call("GET", ctx.service.base_url + path, headers)),
            ("bare", Call("GET", ctx.bare.base_url + path, headers)),
        )
        plan = ThroughputPlan(sides, WRK_CONNECTIONS, p.p4_round_s, p.rounds, 1.0)
        result = await ctx.loadgen.run(run_throughput, plan, p4_estimate(ctx))
        for side in ("service", "bare"):
            rps[(endpoint, side)] = [result.requests[side] / result.seconds[side]]
    return _p4_rows(ctx, rps, {}, "python client")


def _p4_rows(
    ctx: Ctx, rps: dict[tuple[str, str], list[float]], latency: dict[tuple[str, str], list[float]], tool: str
) -> Outcome:
    rows = []
    minimum = {"progress": 0.6, "get job": 0.5}
    rounds = len(rps[("progress", "service")])
    for endpoint, floor in minimum.items():
        s = sum(rps[(endpoint, "service")]) / rounds
        b = sum(rps[(endpoint, "bare")]) / rounds
        n = f"{rounds}x{ctx.profile.p4_round_s:g}s, {WRK_CONNECTIONS} conn."
        rows.append(
            Row(
                "P4",
                f"GET {endpoint} vs bare handler",
                "req/s",
                s,
                b,
                None,
                ratio(s, b),
                f"≥ {floor:.2f}x",
                s >= floor * b,
                n,
            )
        )
    details = {
        "tool": tool,
        "connections": WRK_CONNECTIONS,
        "req_per_s": {f"{e}/{s}": v for (e, s), v in rps.items()},
        "p50_ms": {f"{e}/{s}": v for (e, s), v in latency.items()},
    }
    return rows, details


def p4_estimate(ctx: Ctx) -> float:
    return 4 * ctx.profile.rounds * (max(1.0, ctx.profile.p4_round_s) + 0.1) + 2 * 1.1 + 1.0


# --------------------------------------------------------------------------- P5: list jobs


async def p5_list(ctx: Ctx) -> Outcome:
    small, large = ctx.lists
    path = "/api/v1/spaces/{}/jobs?status=completed&limit=50"

    def calls(space_id: str, api_key: str) -> tuple[Call, ...]:
        return (Call("GET", ctx.service.base_url + path.format(space_id), (("x-api-key", api_key),)),)

    p = ctx.profile
    sides = (("large", calls(large.space_id, large.api_key)), ("small", calls(small.space_id, small.api_key)))
    result = await _latency(ctx, LatencyPlan(sides, p.p5_samples, 1, p.rounds, p.warmup, p.max_round_s))
    big, little = result.ms["large"], result.ms["small"]
    label = f"list status=completed limit=50: {_count(large.jobs)} vs {_count(small.jobs)} jobs"
    rows = []
    for q in (50, 99):
        s, b = percentile(big, q), percentile(little, q)
        target, ok = ("≤ 1.50x", s <= 1.5 * b) if q == 50 else ("", None)
        rows.append(Row("P5", f"{label} p{q}", "ms", s, b, s - b, ratio(s, b), target, ok, f"{len(big)}+{len(little)}"))
    return rows, {side: _latency_summary(ms) for side, ms in result.ms.items()}


def _count(jobs: int) -> str:
    return f"{jobs // 1_000_000}M" if jobs >= 1_000_000 else f"{jobs // 1000}k"


def p5_estimate(ctx: Ctx) -> float:
    return 2 * (ctx.profile.p5_samples + ctx.profile.warmup) * 0.004 + 2.0


# --------------------------------------------------------------------------- P6: freshness


async def p6_fresh(ctx: Ctx) -> Outcome:
    job_url = f"{ctx.service.base_url}/api/v1/jobs/{ctx.run.fresh}"
    plan = FreshnessPlan(
        job_url,
        (("x-api-key", ctx.run.space.api_key),),
        FRESH_WRITERS,
        FRESH_LINES,
        ctx.profile.p6_duration_s,
        FRESH_POLL_S,
        drain_s=3.0,
    )
    before = await _scratch_activity(ctx)
    result = await ctx.loadgen.run(run_freshness, plan, p6_estimate(ctx) + 30)
    es_activity = _activity_since(before, await _scratch_activity(ctx))
    if result.errors or result.unseen:
        ctx.notes.append(f"P6: {result.errors} errors, {result.unseen} batches never seen by the tailer")
    rows = _freshness_rows("poll tailer", result.visible_ms, FRESH_POLL_P95_MS)
    stream_rows, stream_details = await _p6_stream(ctx)
    details = {
        "writers": FRESH_WRITERS,
        "lines_per_post": FRESH_LINES,
        "poll_interval_ms": FRESH_POLL_S * 1000,
        "visible_ms": _latency_summary(result.visible_ms) | {"p95": percentile(result.visible_ms, 95)},
        "post_ms": _latency_summary(result.post_ms),
        "polls": result.polls,
        "unseen": result.unseen,
        "errors": result.errors,
        "es": es_activity,
        "stream": stream_details,
    }
    return rows + stream_rows, details


async def _scratch_activity(ctx: Ctx) -> dict[str, int]:
    """What Elasticsearch did on this run's write index so far: explicit refreshes (and their time), searches,
    document gets (each line of an ``_mget`` is one). P6 keeps the difference over its writing in its details."""
    async with Es(ctx.es_url) as es:
        answer = await es.call(
            "GET",
            f"/{scratch_index()}/_stats/refresh,search,get",
            params={"filter_path": "_all.total"},
            allow=(200, 404),
        )
    total = (answer or {}).get("_all", {}).get("total", {})
    refresh, search, get = total.get("refresh", {}), total.get("search", {}), total.get("get", {})
    return {
        "refreshes": int(refresh.get("external_total", 0)),
        "refresh_ms": int(refresh.get("external_total_time_in_millis", 0)),
        "searches": int(search.get("query_total", 0)),
        "gets": int(get.get("total", 0)),
    }


def _activity_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


async def _p6_stream(ctx: Ctx) -> Outcome:
    """The same writers, followed by one live stream (``after=0`` on an empty job) instead of a poller."""
    plan = StreamPlan(
        ctx.service.base_url,
        (("x-api-key", ctx.run.space.api_key),),
        (ctx.run.fresh_stream,),
        (1,),
        FRESH_WRITERS,
        FRESH_LINES,
        post_interval_s=0.0,
        phase_s=ctx.profile.p6_duration_s,
        drain_s=3.0,
        settle_s=0.3,
        open_concurrency=1,
        open_timeout_s=10.0,
        max_posts=10_000,
    )
    before = await _scratch_activity(ctx)
    result = await ctx.loadgen.run(run_streams, plan, _p6_stream_estimate(ctx) + 30)
    es_activity = _activity_since(before, await _scratch_activity(ctx))
    [phase] = result.phases or [StreamPhaseResult(0, 0.0)]
    if result.errors or phase.errors or phase.unseen:
        ctx.notes.append(
            f"P6 stream: {result.errors} broken streams, {phase.errors} POST errors, {phase.unseen} batches never seen"
        )
    rows = _freshness_rows("live stream", phase.seen_ms, FRESH_STREAM_P95_MS)
    return rows, _phase_details(phase) | {"events": result.events, "broken_streams": result.errors, "es": es_activity}


def _phase_details(phase: StreamPhaseResult) -> Details:
    return {
        "streams": phase.streams,
        "open_s": round(phase.open_s, 2),
        "posts": phase.posts,
        "write_s": round(phase.write_s, 2),
        "seen_ms": _latency_summary(phase.seen_ms) | {"p95": percentile(phase.seen_ms, 95)},
        "post_ms": _latency_summary(phase.post_ms) | {"p95": percentile(phase.post_ms, 95)},
        "unseen": phase.unseen,
        "errors": phase.errors,
        "es_queries": phase.es_queries,
        "es_s": round(phase.es_s, 2),
        "es_index_queries": phase.es_index_queries,
        "rss_mib": _latency_summary(phase.rss_mib),
    }


def _p6_stream_estimate(ctx: Ctx) -> float:
    return ctx.profile.p6_duration_s + 3.0 + 1.0


def p6_estimate(ctx: Ctx) -> float:
    return ctx.profile.p6_duration_s + 3.0 + _p6_stream_estimate(ctx)


# --------------------------------------------------------------------------- P7: fan-out


async def p7_fanout(ctx: Ctx) -> Outcome:
    p = ctx.profile
    jobs = ctx.run.fanout
    plan = StreamPlan(
        ctx.service.base_url,
        (("x-api-key", ctx.run.space.api_key),),
        jobs,
        (1, p.p7_streams_per_job),
        FANOUT_WRITERS,
        FRESH_LINES,
        post_interval_s=FANOUT_POST_INTERVAL_S,
        phase_s=p.p7_phase_s,
        drain_s=3.0,
        settle_s=1.0,
        open_concurrency=FANOUT_OPEN_CONCURRENCY,
        open_timeout_s=60.0,
        max_posts=int(p.p7_phase_s / FANOUT_POST_INTERVAL_S) + 1,
        es_url=ctx.es_url,
        service_pid=ctx.service.popen.pid,
        es_index=scratch_index(),
        prime=True,
    )
    result = await ctx.loadgen.run(run_streams, plan, p7_estimate(ctx) + 60)
    if len(result.phases) != 2:
        raise RuntimeError(f"P7 ran {len(result.phases)} of its 2 phases")
    one, many = result.phases
    if result.errors or one.errors or many.errors or one.unseen or many.unseen:
        ctx.notes.append(
            f"P7: {result.errors} broken or refused streams, {one.errors + many.errors} POST errors, "
            f"{one.unseen}+{many.unseen} (stream, batch) pairs never seen"
        )
    for phase in result.phases:  # the cluster-wide count is the figure; this run's index says whether it is clean
        if phase.es_queries > 1.25 * phase.es_index_queries + 50:
            ctx.notes.append(
                f"P7: {phase.es_queries} ES reads cluster-wide vs {phase.es_index_queries} on {scratch_index()} "
                f"with {phase.streams} streams: other read load on the cluster"
            )
    wanted = len(jobs) * p.p7_streams_per_job
    if many.streams < wanted:
        ctx.notes.append(f"P7: {many.streams} of {wanted} streams opened")
    rows = _p7_rows(ctx, result, len(jobs))
    details = {
        "jobs": len(jobs),
        "writers": FANOUT_WRITERS,
        "lines_per_post": FRESH_LINES,
        "post_interval_s": FANOUT_POST_INTERVAL_S,
        "idle_rss_mib": _latency_summary(result.idle_rss_mib),
        "events": result.events,
        "broken_streams": result.errors,
        "phases": [_phase_details(phase) for phase in result.phases],
    }
    return rows, details


def _p7_rows(ctx: Ctx, result: StreamResult, jobs: int) -> list[Row]:
    one, many = result.phases
    fewer = (
        f" (fewer than full's {FULL.p7_streams_per_job}/job)"
        if ctx.profile.p7_streams_per_job < FULL.p7_streams_per_job
        else ""
    )
    label = f"{many.streams:,} streams / {jobs} jobs{fewer}"
    n = f"{len(many.seen_ms)} deliveries"
    rows = [
        Row("P7", f"fan-out {label}: POST start → seen p{q}", "ms", percentile(many.seen_ms, q), samples=n)
        for q in (50, 95)
    ]
    idle = percentile(result.idle_rss_mib, 50)
    loaded = percentile(many.rss_mib, 50)
    per_stream_kib = (loaded - idle) * 1024 / many.streams if many.streams else math.nan
    rss_n = f"{len(result.idle_rss_mib)}+{len(many.rss_mib)} RSS samples"
    rows.append(Row("P7", f"service RSS per stream, {label} (loaded - idle)", "KiB", per_stream_kib, samples=rss_n))
    rate_many = many.es_queries / many.es_s if many.es_s else math.nan
    rate_one = one.es_queries / one.es_s if one.es_s else math.nan
    rows.append(
        Row(
            "P7",
            f"ES reads/s (searches + gets): {many.streams:,} vs {one.streams} streams, same jobs & writes",
            "reads/s",
            rate_many,
            rate_one,
            None,
            ratio(rate_many, rate_one),
            f"≤ {FANOUT_SEARCH_RATIO:.2f}x",
            rate_many <= FANOUT_SEARCH_RATIO * rate_one,
            f"{many.es_s:.1f}+{one.es_s:.1f} s",
        )
    )
    return rows


def p7_estimate(ctx: Ctx) -> float:
    streams = len(ctx.run.fanout) * ctx.profile.p7_streams_per_job
    return 2 * (ctx.profile.p7_phase_s + 1.0 + 1.0) + streams / 200.0 + 3.0


# --------------------------------------------------------------------------- W: one worker vs several

W_WORKERS = 2
W_SIDES = ("1 worker", f"{W_WORKERS} workers")


async def w_workers(ctx: Ctx) -> Outcome:
    """P4's progress read (wrk, 16 connections) and P2's tail page (16 clients) against the run's service (one
    worker) and a second one started with ``--workers 2``, alternating rounds like every baseline."""
    workers = start_service("service-w2", SERVICE_ENV, RESULTS_DIR, workers=W_WORKERS)
    try:
        await wait_logged(workers, f"with {W_WORKERS} workers")  # every worker listens, not only the first
        await wait_http(workers, "/readyz")
        procs = dict(zip(W_SIDES, (ctx.service, workers), strict=True))
        rows, details = await _w_progress(ctx, procs)
        tail_rows, details["tail"] = await _w_tail(ctx, {side: proc.base_url for side, proc in procs.items()})
    finally:
        await asyncio.to_thread(workers.stop)
    return rows + tail_rows, details


async def _w_progress(ctx: Ctx, procs: dict[str, Proc]) -> Outcome:
    path = f"/api/v1/jobs/{ctx.run.meta}/progress"
    bases = {side: proc.base_url for side, proc in procs.items()}
    rps: dict[str, list[float]] = {}
    cpu: dict[str, list[dict[str, float]]] = {}
    if ctx.wrk is None:
        headers = (("x-api-key", ctx.run.space.api_key),)
        sides = tuple((side, Call("GET", base + path, headers)) for side, base in bases.items())
        plan = ThroughputPlan(sides, WRK_CONNECTIONS, ctx.profile.p4_round_s, ctx.profile.rounds, 1.0)
        result = await ctx.loadgen.run(run_throughput, plan, w_estimate(ctx))
        rps = {side: [result.requests[side] / result.seconds[side]] for side in bases}
    else:
        binary, key = ctx.wrk, {"x-api-key": ctx.run.space.api_key}
        for base in bases.values():  # warm-up: each service once
            await asyncio.to_thread(wrk.run, binary, base + path, key, 1, WRK_CONNECTIONS)
        for number in range(ctx.profile.rounds):
            for side in order(list(bases), number):
                before = procs[side].tree_cpu_s(), machine_cpu_s()
                got = await asyncio.to_thread(
                    wrk.run, binary, bases[side] + path, key, ctx.profile.p4_round_s, WRK_CONNECTIONS
                )
                rps.setdefault(side, []).append(got.requests_per_s)
                cpu.setdefault(side, []).append(_w_cpu(procs[side], before, got.requests))
                if got.errors:
                    ctx.notes.append(f"W: {got.errors} wrk errors ({side})")
    one, many = (sum(rps[side]) / len(rps[side]) for side in W_SIDES)
    samples = f"{len(rps[W_SIDES[0]])}x{ctx.profile.p4_round_s:g}s, {WRK_CONNECTIONS} conn."
    rows = [Row("W", f"GET progress, {W_SIDES[1]} vs 1", "req/s", many, one, None, ratio(many, one), samples=samples)]
    if cpu:  # measured with wrk (the Python client runs both sides in one call)
        one_us, many_us = (sum(r["service_us_per_request"] for r in cpu[side]) / len(cpu[side]) for side in W_SIDES)
        label = f"GET progress: service CPU per request, {W_SIDES[1]} vs 1"
        rows.append(Row("W", label, "µs", many_us, one_us, many_us - one_us, ratio(many_us, one_us), samples=samples))
    return rows, {"tool": "wrk" if ctx.wrk else "python client", "progress_req_per_s": rps, "progress_cpu": cpu}


def _w_cpu(proc: Proc, before: tuple[float, tuple[float, float]], requests: int) -> dict[str, float]:
    """What a round cost: the service's CPU per request (all its processes) and how busy the machine was."""
    service_s, (busy_s, total_s) = proc.tree_cpu_s() - before[0], machine_cpu_s()
    machine_busy = (busy_s - before[1][0]) / max(total_s - before[1][1], 1e-9)
    return {"service_us_per_request": 1e6 * service_s / max(requests, 1), "machine_busy": round(machine_busy, 3)}


async def _w_tail(ctx: Ctx, bases: dict[str, str]) -> Outcome:
    clients, samples = CLIENTS[1], ctx.profile.p2_samples[1]
    p = ctx.profile
    calls = {side: tuple(_with_base(call, base) for call, _ in ctx.captures.tail) for side, base in bases.items()}
    sides = tuple(calls.items())
    result = await _latency(ctx, LatencyPlan(sides, samples, clients, p.rounds, p.warmup, p.max_round_s))
    one, many = result.ms[W_SIDES[0]], result.ms[W_SIDES[1]]
    rows = []
    for q in (50, 99):
        m, o = percentile(many, q), percentile(one, q)
        label = f"tail after=N limit=200, {clients} cl. p{q}, {W_SIDES[1]} vs 1"
        rows.append(Row("W", label, "ms", m, o, delta=m - o, ratio=ratio(m, o), samples=f"{len(many)}+{len(one)}"))
    return rows, {side: _latency_summary(ms) for side, ms in result.ms.items()}


def w_estimate(ctx: Ctx) -> float:
    progress = 2 * ctx.profile.rounds * (max(1.0, ctx.profile.p4_round_s) + 0.1) + 2 * 1.1
    tail = 2 * (ctx.profile.p2_samples[1] + ctx.profile.warmup) / 150.0
    return progress + tail + 20.0  # the second service's start and stop


SCENARIOS = (
    Scenario("P4", p4_meta, p4_estimate),
    Scenario("P5", p5_list, p5_estimate),
    Scenario("P2", p2_tail, lambda ctx: reads_estimate(ctx.profile.p2_samples, 10.0, 150.0, ctx)),
    Scenario("P3", p3_search, lambda ctx: 1.5 * reads_estimate(ctx.profile.p3_samples, 18.0, 100.0, ctx)),  # 3 sides
    Scenario("S", s_space_search, lambda ctx: 2 * (ctx.profile.space_samples + ctx.profile.warmup) * 0.05 + 5.0),
    Scenario("E", e_export, lambda ctx: ctx.profile.rounds * len(ctx.captures.export) * 2 * 3.0 + 5.0),
    Scenario("P1", p1_ingest, p1_estimate),
    Scenario("P6", p6_fresh, p6_estimate),
    Scenario("P7", p7_fanout, p7_estimate),
    Scenario("Q", q_quality, q_estimate),
    Scenario("W", w_workers, w_estimate),
)
