"""The load generator: runs in its own process (see `LoadGen`), async aiohttp client, loopback only.

Every plan is bounded by a request count and by time. Service and baseline run in alternating rounds (the order
flips each round), the same requests in the same order on both sides, after an untimed warm-up on each side.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import orjson

from bench.textgen import ulid_at

Headers = tuple[tuple[str, str], ...]
# Only what a call names is sent (plus Host and Content-Length): replayed ES requests must be exact.
SKIP_AUTO = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    url: str
    headers: Headers
    body: bytes | None = None


def order(sides: Sequence[str], round_number: int) -> list[str]:
    return list(sides) if round_number % 2 == 0 else list(reversed(sides))


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=SKIP_AUTO)


@contextlib.asynccontextmanager
async def _side_sessions(names: Sequence[str], connections: int) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """One client session per side (service, baseline), each with its own connection pool, closed at the end."""
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(_session(connections)) for name in names}


async def _send(session: aiohttp.ClientSession, call: Call) -> tuple[int, bytes]:
    async with session.request(call.method, call.url, headers=list(call.headers), data=call.body) as response:
        return response.status, await response.read()


def _ok(status: int, body: bytes) -> bool:
    return 200 <= status < 300 and b'"errors":true' not in body[:64]


# --------------------------------------------------------------------------- latency (P2, P3, P5)


@dataclass(frozen=True, slots=True)
class LatencyPlan:
    sides: tuple[tuple[str, tuple[Call, ...]], ...]  # side → its calls, index-aligned across sides
    samples: int  # per side, over all rounds
    concurrency: int
    rounds: int
    warmup: int
    max_s: float  # per side and round


@dataclass(slots=True)
class LatencyResult:
    ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)


async def _closed_loop(
    session: aiohttp.ClientSession, calls: Sequence[Call], first: int, count: int, concurrency: int, max_s: float
) -> tuple[list[float], int]:
    """``count`` calls (``calls[first...]``, cycling) by ``concurrency`` clients; stops early after ``max_s``."""
    numbers = iter(range(first, first + count))
    deadline = time.perf_counter() + max_s
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        for number in numbers:
            if time.perf_counter() > deadline:
                return
            call = calls[number % len(calls)]
            started = time.perf_counter()
            try:
                status, body = await _send(session, call)
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000.0)
            errors += not _ok(status, body)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors


async def _latency(plan: LatencyPlan) -> LatencyResult:
    result = LatencyResult()
    names = [name for name, _ in plan.sides]
    calls = dict(plan.sides)
    async with _side_sessions(names, plan.concurrency) as sessions:
        for name in names:
            await _closed_loop(sessions[name], calls[name], 0, plan.warmup, plan.concurrency, plan.max_s)
            result.ms[name], result.errors[name], result.busy_s[name] = [], 0, 0.0
        per_round = max(1, plan.samples // plan.rounds)
        for number in range(plan.rounds):
            for name in order(names, number):
                started = time.perf_counter()
                ms, errors = await _closed_loop(
                    sessions[name],
                    calls[name],
                    plan.warmup + number * per_round,
                    per_round,
                    plan.concurrency,
                    plan.max_s,
                )
                result.busy_s[name] += time.perf_counter() - started
                result.ms[name] += ms
                result.errors[name] += errors
    return result


def run_latency(plan: LatencyPlan) -> LatencyResult:
    return asyncio.run(_latency(plan))


# --------------------------------------------------------------------------- throughput (P4 without wrk)


@dataclass(frozen=True, slots=True)
class ThroughputPlan:
    sides: tuple[tuple[str, Call], ...]
    concurrency: int
    round_s: float
    rounds: int
    warmup_s: float


@dataclass(slots=True)
class ThroughputResult:
    requests: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


async def _for_duration(
    session: aiohttp.ClientSession, call: Call, concurrency: int, seconds: float
) -> tuple[int, int]:
    deadline = time.perf_counter() + seconds
    done = errors = 0

    async def client() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            status, body = await _send(session, call)
            done += 1
            errors += not _ok(status, body)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, errors


async def _throughput(plan: ThroughputPlan) -> ThroughputResult:
    result = ThroughputResult()
    names = [name for name, _ in plan.sides]
    calls = dict(plan.sides)
    async with _side_sessions(names, plan.concurrency) as sessions:
        for name in names:
            await _for_duration(sessions[name], calls[name], plan.concurrency, plan.warmup_s)
            result.requests[name], result.seconds[name], result.errors[name] = 0, 0.0, 0
        for number in range(plan.rounds):
            for name in order(names, number):
                started = time.perf_counter()
                done, errors = await _for_duration(sessions[name], calls[name], plan.concurrency, plan.round_s)
                result.seconds[name] += time.perf_counter() - started
                result.requests[name] += done
                result.errors[name] += errors
    return result


def run_throughput(plan: ThroughputPlan) -> ThroughputResult:
    return asyncio.run(_throughput(plan))


# --------------------------------------------------------------------------- ingestion (P1)


class CallSource(Protocol):
    def call(self, writer: int, number: int, round_number: int) -> Call: ...


@dataclass(frozen=True, slots=True)
class ApiWriters:
    """The service side: writer ``w`` posts ``bodies`` in turn to its own job."""

    urls: tuple[str, ...]
    headers: Headers
    bodies: tuple[bytes, ...]

    def call(self, writer: int, number: int, round_number: int) -> Call:
        return Call("POST", self.urls[writer], self.headers, self.bodies[number % len(self.bodies)])


@dataclass(frozen=True, slots=True)
class BulkTemplate:
    """A recorded service ``_bulk`` turned into a generator of the same request for other jobs and seqs.

    ``docs[b]`` holds batch ``b``'s documents serialized up to (not including) their final ``"seq"`` member,
    with the recorded job id replaced by `JOB`; ``path_qs`` holds `JOB` where the routing goes.
    """

    es_url: str
    path_qs: str
    headers: Headers
    index: str
    docs: tuple[tuple[bytes, ...], ...]

    JOB = "@JOB@"

    def body(self, batch: int, job_id: str, first_seq: int) -> bytes:
        parts: list[bytes] = []
        job = job_id.encode()
        for offset, prefix in enumerate(self.docs[batch % len(self.docs)]):
            seq = first_seq + offset
            parts.append(orjson.dumps({"create": {"_index": self.index, "_id": f"{job_id}:{seq}"}}))
            parts.append(prefix.replace(b"@JOB@", job) + b',"seq":' + str(seq).encode() + b"}")
        parts.append(b"")
        return b"\n".join(parts)

    def request(self, batch: int, job_id: str, first_seq: int) -> Call:
        url = self.es_url + self.path_qs.replace(self.JOB, job_id)
        return Call("POST", url, self.headers, self.body(batch, job_id, first_seq))


@dataclass(frozen=True, slots=True)
class DirectWriters:
    """The baseline: writer ``w`` bulk-writes the same documents to a fresh job of its own every round."""

    template: BulkTemplate
    lines_per_call: int
    created_ms: int  # when the plan was made: the baseline's job ids are ULIDs of that time

    def call(self, writer: int, number: int, round_number: int) -> Call:
        job_id = ulid_at(self.created_ms, random.Random(f"{self.created_ms}:{round_number}:{writer}"))
        return self.template.request(number, job_id, 1 + number * self.lines_per_call)


@dataclass(frozen=True, slots=True)
class IngestPlan:
    sides: tuple[tuple[str, ApiWriters | DirectWriters], ...]
    writers: int
    lines_per_call: int
    round_s: float
    rounds: int
    warmup_calls: int  # per writer and side
    max_calls: int  # per writer, side and round


@dataclass(slots=True)
class IngestResult:
    lines: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    call_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


async def _writers(
    session: aiohttp.ClientSession, plan: IngestPlan, source: CallSource, round_number: int, seconds: float, calls: int
) -> tuple[int, float, list[float], int]:
    started = time.perf_counter()
    deadline = started + seconds
    latencies: list[float] = []
    lines = errors = 0

    async def writer(number: int) -> None:
        nonlocal lines, errors
        for k in range(calls):
            if time.perf_counter() >= deadline:
                return
            call = source.call(number, k, round_number)
            sent = time.perf_counter()
            status, body = await _send(session, call)
            latencies.append((time.perf_counter() - sent) * 1000.0)
            if _ok(status, body):
                lines += plan.lines_per_call
            else:
                errors += 1

    await asyncio.gather(*(writer(number) for number in range(plan.writers)))
    return lines, time.perf_counter() - started, latencies, errors


async def _ingest(plan: IngestPlan) -> IngestResult:
    result = IngestResult()
    names = [name for name, _ in plan.sides]
    sources = dict(plan.sides)
    async with _side_sessions(names, plan.writers) as sessions:
        for name in names:  # warm-up: round number -1 gives the baseline its own jobs
            await _writers(sessions[name], plan, sources[name], -1, plan.round_s, plan.warmup_calls)
            result.lines[name], result.seconds[name], result.call_ms[name], result.errors[name] = 0, 0.0, [], 0
        for number in range(plan.rounds):
            for name in order(names, number):
                lines, seconds, ms, errors = await _writers(
                    sessions[name], plan, sources[name], number, plan.round_s, plan.max_calls
                )
                result.lines[name] += lines
                result.seconds[name] += seconds
                result.call_ms[name] += ms
                result.errors[name] += errors
    return result


def run_ingest(plan: IngestPlan) -> IngestResult:
    return asyncio.run(_ingest(plan))


# --------------------------------------------------------------------------- freshness (P6)


@dataclass(frozen=True, slots=True)
class FreshnessPlan:
    job_url: str  # .../api/v1/jobs/<id>
    headers: Headers
    writers: int
    lines_per_post: int
    duration_s: float
    poll_interval_s: float
    drain_s: float  # how long the tailer may keep reading after the writers stop


@dataclass(slots=True)
class FreshnessResult:
    visible_ms: list[float] = field(default_factory=list)  # POST start → first seen by the tailer
    post_ms: list[float] = field(default_factory=list)  # POST start → its answer
    polls: int = 0
    unseen: int = 0
    errors: int = 0


def _fresh_body(writer: int, number: int, lines: int) -> bytes:
    logs = [
        {"message": f"fresh line {i} of batch {number} from writer {writer}", "metadata": {"w": writer, "b": number}}
        for i in range(lines)
    ]
    return orjson.dumps({"logs": logs})


async def _freshness(plan: FreshnessPlan) -> FreshnessResult:
    result = FreshnessResult()
    started: dict[tuple[int, int], float] = {}
    seen: set[tuple[int, int]] = set()
    stop_writing = time.perf_counter() + plan.duration_s
    json_headers = (*plan.headers, ("Content-Type", "application/json"))
    async with _session(plan.writers + 1) as session:

        async def writer(number: int) -> None:
            batch = 0
            while time.perf_counter() < stop_writing:
                body = _fresh_body(number, batch, plan.lines_per_post)
                started[(number, batch)] = sent = time.perf_counter()
                status, _ = await _send(session, Call("POST", plan.job_url + "/logs", json_headers, body))
                result.post_ms.append((time.perf_counter() - sent) * 1000.0)
                result.errors += status != 200
                batch += 1

        async def tailer() -> None:
            after = 0
            stop_reading = stop_writing + plan.drain_s
            while time.perf_counter() < stop_reading:
                call = Call("GET", f"{plan.job_url}/logs?after={after}&limit=500", plan.headers)
                status, body = await _send(session, call)
                now = time.perf_counter()
                result.polls += 1
                if status != 200:
                    result.errors += 1
                    continue
                page: dict[str, Any] = orjson.loads(body)
                for line in page["logs"]:
                    key = (int(line["metadata"]["w"]), int(line["metadata"]["b"]))
                    if key not in seen:
                        seen.add(key)
                        result.visible_ms.append((now - started[key]) * 1000.0)
                after = page["cursor"]["newestSeq"] or after
                if time.perf_counter() > stop_writing and len(seen) == len(started):
                    return
                await asyncio.sleep(plan.poll_interval_s)

        await asyncio.gather(tailer(), *(writer(number) for number in range(plan.writers)))
    result.unseen = len(started) - len(seen)
    return result


def run_freshness(plan: FreshnessPlan) -> FreshnessResult:
    return asyncio.run(_freshness(plan))


# --------------------------------------------------------------------------- live streams (P6 stream, P7)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Streams (``GET …/logs/stream``) follow ``jobs`` while writers append to them, in phases.

    Phase ``i`` first brings every job to ``phases[i]`` streams (the streams of earlier phases stay open; a new one
    starts from the seq its job's first stream last saw), lets them settle, then writes for ``phase_s``: writer
    posts go round-robin over the jobs (one shared counter), each writer starting a post at most every
    ``post_interval_s``. Every (stream, batch of this phase) pair is timed from the POST's start to the moment the
    stream's chunk holding it arrived; the phase ends once every pair was seen or ``drain_s`` after the writing.
    """

    base_url: str
    headers: Headers
    jobs: tuple[str, ...]
    phases: tuple[int, ...]  # streams per job in each phase, cumulative
    writers: int
    lines_per_post: int
    post_interval_s: float  # per writer; 0: back to back
    phase_s: float
    drain_s: float
    settle_s: float  # after the phase's streams are open, before its writing starts
    open_concurrency: int  # streams being opened at once
    open_timeout_s: float  # per phase
    max_posts: int  # per writer and phase
    es_url: str = ""  # when set: Elasticsearch's search query_total is read around each phase's writing
    service_pid: int = 0  # when set: its RSS is sampled every 100 ms (idle before the streams, then per phase)
    es_index: str = ""  # when set (with es_url): that index's own search query_total too, a cross-check
    prime: bool = False  # one untimed batch per job first, so that every job has lines before phase 0


@dataclass(slots=True)
class StreamPhaseResult:
    streams: int  # open during the writing
    open_s: float  # opening this phase's new streams
    seen_ms: list[float] = field(default_factory=list)  # POST start → seen, one per (stream, batch)
    post_ms: list[float] = field(default_factory=list)
    posts: int = 0
    unseen: int = 0  # (stream, batch) pairs of this phase never seen
    write_s: float = 0.0  # from the first post's start to the last post's answer
    es_queries: int = -1  # ES reads (searches + gets) delta over the writing (-1: not read)
    es_s: float = 0.0  # the interval the delta covers
    es_index_queries: int = -1  # the same for `StreamPlan.es_index` only
    rss_mib: list[float] = field(default_factory=list)  # during the writing
    errors: int = 0


@dataclass(slots=True)
class StreamResult:
    idle_rss_mib: list[float] = field(default_factory=list)  # before any stream
    phases: list[StreamPhaseResult] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # by kind, "ping" for comments
    errors: int = 0  # streams refused or broken


def _statm_mib(pid: int) -> float:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _es_query_total(session: aiohttp.ClientSession, es_url: str, index: str) -> tuple[int, int]:
    """The cluster's reads (search query phases plus documents got by id: a tail read fetches lines not yet
    searchable with a realtime ``_mget``), summed over nodes, and ``index``'s own (0 without one)."""
    fields = "nodes.*.indices.search.query_total,nodes.*.indices.get.total"
    url = f"{es_url}/_nodes/stats/indices/search,get?filter_path={fields}"
    async with session.get(url) as response:
        answer: dict[str, Any] = orjson.loads(await response.read())
    total = sum(_reads(node["indices"]) for node in answer["nodes"].values())
    if not index:
        return total, 0
    own_url = f"{es_url}/{index}/_stats/search,get?filter_path=_all.total.search.query_total,_all.total.get.total"
    async with session.get(own_url) as response:
        own: dict[str, Any] = orjson.loads(await response.read())
    return total, _reads(own["_all"]["total"])


def _reads(stats: dict[str, Any]) -> int:
    return int(stats.get("search", {}).get("query_total", 0)) + int(stats.get("get", {}).get("total", 0))


@dataclass(eq=False, slots=True)
class _Follower:
    """One stream being read: SSE parsed line by line; first sight of each batch of the current phase timed."""

    job: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # headers in (or refused)
    last_id: int = 0
    seen: set[tuple[int, int, int]] = field(default_factory=set)
    ok: bool = False


class _StreamRun:
    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan
        self.result = StreamResult()
        self.phase = -1
        self.started: dict[tuple[int, int, int], tuple[float, int]] = {}  # (phase, writer, batch) → (t, job)
        self.followers: list[_Follower] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.events: collections.Counter[str] = collections.Counter()
        self.seen_count = 0  # (stream, batch) pairs of the current phase seen
        self.expected = -1  # how many there are, once the phase's writing is over
        self.all_seen = asyncio.Event()

    def _stream_url(self, job: int, after: int) -> str:
        return f"{self.plan.base_url}/api/v1/jobs/{self.plan.jobs[job]}/logs/stream?after={after}"

    async def _follow(self, session: aiohttp.ClientSession, follower: _Follower, after: int) -> None:
        try:
            async with session.get(self._stream_url(follower.job, after), headers=list(self.plan.headers)) as response:
                follower.ok = response.status == 200
                follower.ready.set()
                if not follower.ok:
                    self.result.errors += 1
                    return
                kind, data, pending = "message", b"", b""
                async for chunk in response.content.iter_any():
                    now = time.perf_counter()
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if line:
                            name, _, value = line.partition(b":")
                            value = value.removeprefix(b" ")
                            if name == b"data":
                                data += value
                            elif name == b"event":
                                kind = value.decode()
                            elif name == b"id":
                                follower.last_id = int(value)
                            elif name == b"":
                                self.events["ping"] += 1
                            continue
                        if data:  # a blank line ends an event
                            self.events[kind] += 1
                            if kind == "logs":
                                current = self.result.phases[self.phase] if self.phase >= 0 else None
                                self._saw(follower, orjson.loads(data)["logs"], now, current)
                        kind, data = "message", b""
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.result.errors += 1
        finally:
            follower.ready.set()

    def _saw(
        self, follower: _Follower, lines: list[dict[str, Any]], now: float, current: StreamPhaseResult | None
    ) -> None:
        for line in lines:
            meta = line.get("metadata") or {}
            key = (int(meta.get("p", -1)), int(meta.get("w", -1)), int(meta.get("b", -1)))
            if key[0] == self.phase and key not in follower.seen and key in self.started and current is not None:
                follower.seen.add(key)
                self.seen_count += 1
                if self.seen_count == self.expected:
                    self.all_seen.set()
                current.seen_ms.append((now - self.started[key][0]) * 1000.0)

    async def _open(self, session: aiohttp.ClientSession, per_job: int) -> float:
        """Bring every job to ``per_job`` streams, ``open_concurrency`` at a time; seconds taken."""
        plan = self.plan
        first_of: dict[int, _Follower] = {}
        for follower in self.followers:
            first_of.setdefault(follower.job, follower)
        have = collections.Counter(follower.job for follower in self.followers)
        wanted = [job for job in range(len(plan.jobs)) for _ in range(per_job - have[job])]
        gate = asyncio.Semaphore(plan.open_concurrency)
        started = time.perf_counter()

        async def open_one(job: int) -> None:
            async with gate:
                first = first_of.get(job)
                follower = _Follower(job)
                self.followers.append(follower)
                self.tasks.append(asyncio.create_task(self._follow(session, follower, first.last_id if first else 0)))
                await follower.ready.wait()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(plan.open_timeout_s):
                await asyncio.gather(*(open_one(job) for job in wanted))
        return time.perf_counter() - started

    async def _write(self, session: aiohttp.ClientSession, current: StreamPhaseResult) -> None:
        plan = self.plan
        json_headers = [*plan.headers, ("Content-Type", "application/json")]
        counter = iter(range(plan.writers * plan.max_posts))
        stop = time.perf_counter() + plan.phase_s

        async def writer(number: int) -> None:
            for batch in range(plan.max_posts):
                sent = time.perf_counter()
                if sent >= stop:
                    return
                job = next(counter) % len(plan.jobs)
                key = (self.phase, number, batch)
                logs = [
                    {"message": f"live line {i} of batch {batch} from writer {number}", "metadata": {"p": key[0], "w": number, "b": batch}}  # noqa: E501
                    for i in range(plan.lines_per_post)
                ]  # fmt: skip
                self.started[key] = (sent, job)
                url = f"{plan.base_url}/api/v1/jobs/{plan.jobs[job]}/logs"
                try:
                    async with session.post(url, headers=json_headers, data=orjson.dumps({"logs": logs})) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                current.post_ms.append((time.perf_counter() - sent) * 1000.0)
                current.posts += 1
                if not ok:
                    current.errors += 1
                    del self.started[key]
                pause = sent + plan.post_interval_s - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)

        started = time.perf_counter()
        await asyncio.gather(*(writer(number) for number in range(plan.writers)))
        current.write_s = time.perf_counter() - started

    def _expected(self) -> int:
        streams = collections.Counter(f.job for f in self.followers if f.ok)
        return sum(streams[job] for (phase, _, _), (_, job) in self.started.items() if phase == self.phase)

    async def _prime(self, session: aiohttp.ClientSession) -> None:
        headers = [*self.plan.headers, ("Content-Type", "application/json")]
        body = orjson.dumps({"logs": [{"message": f"primer {i}"} for i in range(self.plan.lines_per_post)]})
        gate = asyncio.Semaphore(self.plan.writers or 1)

        async def post(job: str) -> None:
            async with (
                gate,
                session.post(f"{self.plan.base_url}/api/v1/jobs/{job}/logs", headers=headers, data=body) as r,
            ):
                await r.read()
                self.result.errors += r.status != 200

        await asyncio.gather(*(post(job) for job in self.plan.jobs))

    async def _sample_rss(self, into: list[float]) -> None:
        while True:
            into.append(_statm_mib(self.plan.service_pid))
            await asyncio.sleep(0.1)

    async def run(self) -> StreamResult:
        plan = self.plan
        streams = max(plan.phases, default=0) * len(plan.jobs)
        connector = aiohttp.TCPConnector(limit=streams + 16, limit_per_host=streams + 16)
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as readers,
            _session(plan.writers + 2) as writers,
        ):
            if plan.service_pid:
                for _ in range(5):
                    self.result.idle_rss_mib.append(_statm_mib(plan.service_pid))
                    await asyncio.sleep(0.1)
            if plan.prime:
                await self._prime(writers)
            try:
                for number, per_job in enumerate(plan.phases):
                    await self._phase(readers, writers, number, per_job)
            finally:
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
        self.result.events = dict(self.events)
        return self.result

    async def _phase(
        self, readers: aiohttp.ClientSession, writers: aiohttp.ClientSession, number: int, per_job: int
    ) -> None:
        plan = self.plan
        open_s = await self._open(readers, per_job)
        await asyncio.sleep(plan.settle_s)  # every new stream's first read (its catch-up) is done
        current = StreamPhaseResult(sum(f.ok for f in self.followers), open_s)
        self.result.phases.append(current)
        sampler = asyncio.create_task(self._sample_rss(current.rss_mib)) if plan.service_pid else None
        before = await _es_query_total(writers, plan.es_url, plan.es_index) if plan.es_url else (0, 0)
        es_started = time.perf_counter()
        self.seen_count, self.expected = 0, -1
        self.all_seen.clear()
        self.phase = number
        try:
            await self._write(writers, current)
            if plan.es_url:
                after = await _es_query_total(writers, plan.es_url, plan.es_index)
                current.es_queries, current.es_index_queries = after[0] - before[0], after[1] - before[1]
                current.es_s = time.perf_counter() - es_started
            self.expected = self._expected()
            if self.seen_count >= self.expected:
                self.all_seen.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(plan.drain_s):
                    await self.all_seen.wait()
            current.unseen = self.expected - self.seen_count
        finally:
            if sampler is not None:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler


def run_streams(plan: StreamPlan) -> StreamResult:
    return asyncio.run(_StreamRun(plan).run())


# --------------------------------------------------------------------------- the process


class LoadGen:
    """One long-lived load-generator process; `run` blocks the caller's loop only through an awaitable."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    async def run(self, function: Callable[[Any], R], plan: Any, timeout_s: float) -> R:
        future: Future[R] = self._pool.submit(function, plan)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
