"""The load generator: runs in its own process (see `LoadGen`), async aiohttp client, loopback only.

Every plan is bounded by a request count and by time. Service and baseline run in alternating rounds (the order
flips each round), the same requests in the same order on both sides, after an untimed warm-up on each side.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
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
