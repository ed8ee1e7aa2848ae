"""Everything a run needs before timing: processes, data (reused when present), jobs, recorded ES requests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import orjson
from redis.asyncio import Redis

from bench import dataset as datasets
from bench import seed, wrk
from bench.api import Api
from bench.dataset import Dataset, LogJob
from bench.es import Es
from bench.loadgen import ApiWriters, BulkTemplate, Call, Headers, LoadGen
from bench.procs import Proc, start_bare, start_service, wait_http
from bench.profiles import PROFILES, Profile
from bench.report import RESULTS_DIR
from bench.seed import SeededSpace
from bench.textgen import SEARCHES, IsoClock, LineGen, line_extras
from devstack.proxy import Recorded, RecordingProxy

PREFIX = "jlbench"
SPACE_WINDOW_MS = 7 * 24 * 3600 * 1000
SPACE_LIMIT = 50
SERVICE_ENV = {
    "JOBLENS_INDEX_PREFIX": PREFIX,
    "JOBLENS_BACKGROUND_TASKS": "false",
    "JOBLENS_RATE_LIMIT_PER_S": "1000000",
    # P7 opens up to 1,000 streams with one API key: the per-process and per-key caps sit above that
    "JOBLENS_STREAMS_MAX": "2000",
    "JOBLENS_STREAMS_PER_KEY_MAX": "2000",
}
P1_WRITERS = 4
P1_LINES = 500
P1_BODIES = 8  # distinct batches, cycled by every writer
TAIL_LIMIT = 200
RECORD_CONCURRENCY = 8
FANOUT_JOBS = 100  # P7
JOB_PAYLOAD = {"source": "s3://uploads/2025/02/24/IMG_4031.HEIC", "sizes": [320, 640, 1280], "format": "webp"}


@dataclass(frozen=True, slots=True)
class RunJobs:
    space: SeededSpace
    writers: tuple[str, ...]  # P1: one job per writer
    capture: str  # the P1 batches recorded through the capture instance go here
    meta: str  # P4: a running job with events, progress and a callback
    fresh: str  # P6, the polling tailer
    fresh_stream: str  # P6, the live stream
    fanout: tuple[str, ...]  # P7


@dataclass(frozen=True, slots=True)
class Captures:
    tail: tuple[tuple[Call, Call], ...]  # (service call with a path only, the ES request it caused)
    search: tuple[tuple[Call, Call], ...]
    ingest: ApiWriters  # headers and bodies; the urls are set where the target is known
    bulk: BulkTemplate
    space: tuple[tuple[Call, Call], ...]  # a space search, and the ES `_search` it caused first
    export: tuple[ExportCapture, ...]


@dataclass(frozen=True, slots=True)
class ExportCapture:
    """A job's whole-log export through the service, and the first ES page request it caused (the baseline pages
    through the job with it, moving only ``search_after``)."""

    path: str
    headers: Headers
    lines: int
    first_page: Call


@dataclass(slots=True)
class Ctx:
    profile: Profile
    started: float
    es_url: str
    service: Proc
    bare: Proc
    loadgen: LoadGen
    wrk: str | None
    dataset: Dataset
    log_space: SeededSpace
    lists: list[SeededSpace]
    run: RunJobs
    captures: Captures
    data_s: float
    seed_s: float
    versions: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.profile.budget_s + self.data_s - (time.monotonic() - self.started)


def stack_urls() -> tuple[str, str]:
    redis_url = os.environ.get("JOBLENS_REDIS_URL")
    es_url = os.environ.get("JOBLENS_ELASTICSEARCH_URL", "").split(",")[0]
    if not redis_url or not es_url:
        sys.exit("bench: JOBLENS_REDIS_URL and JOBLENS_ELASTICSEARCH_URL must be set (run it with `make bench`)")
    return redis_url, es_url


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def prepare(profile: Profile, exits: contextlib.AsyncExitStack) -> Ctx:
    started = time.monotonic()
    redis_url, es_url = stack_urls()
    wrk_binary = wrk.ensure_wrk()
    es = await exits.enter_async_context(Es(es_url))
    redis = Redis.from_url(redis_url)
    exits.push_async_callback(redis.aclose)
    session = await exits.enter_async_context(aiohttp.ClientSession())
    service = _started(exits, start_service("service", SERVICE_ENV, RESULTS_DIR))
    proxy = RecordingProxy(es_url)
    await proxy.start()
    exits.push_async_callback(proxy.stop)
    capture_env = {**SERVICE_ENV, "JOBLENS_ELASTICSEARCH_URL": proxy.url}
    instance = _started(exits, start_service("capture", capture_env, RESULTS_DIR))
    await asyncio.gather(wait_http(service, "/healthz"), wait_http(instance, "/healthz"))
    other = datasets.load_metadata(next(name for name in PROFILES if name != profile.name))
    data, data_s = await datasets.ensure(es, profile, PREFIX, other)
    await _drop_scratch_index(es, data, other)
    seeded = time.monotonic()
    run_space = await seed.run_space(redis, profile.name)
    api = Api(session, service.base_url, run_space.api_key)
    template = await _template(api, redis, run_space)
    log_space = await seed.log_space(redis, data, template)
    lists = await seed.list_spaces(redis, profile.name, profile.list_sizes, template)
    seed_s = time.monotonic() - seeded
    log(f"data ready: {data.total_lines:,} lines, {len(data.jobs):,} jobs, lists {profile.list_sizes}, {seed_s:.1f} s")
    run = await _run_jobs(api, run_space)
    captures = await _capture(proxy, instance, profile, session, data, log_space, run)
    instance.terminate()
    bare = await _start_bare(exits, api, run.meta, es_url)
    loadgen = LoadGen()
    exits.callback(loadgen.close)
    versions = {
        "es": await es.version(),
        "redis": str((await redis.info("server"))["redis_version"]),
        "wrk": wrk.version(wrk_binary) if wrk_binary else "",
    }
    return Ctx(
        profile, started, es_url, service, bare, loadgen, wrk_binary, data, log_space, lists, run, captures, data_s,
        seed_s, versions,
    )  # fmt: skip


def _started(exits: contextlib.AsyncExitStack, proc: Proc) -> Proc:
    exits.callback(proc.stop)
    return proc


def scratch_index() -> str:
    """Where the jobs of this run keep their lines: this month's index."""
    return f"{PREFIX}-{time.strftime('%Y.%m', time.gmtime())}"


async def _drop_scratch_index(es: Es, data: Dataset, other: Dataset | None) -> None:
    """The write benchmarks go to this month's index: start it empty (never a dataset's index)."""
    scratch = scratch_index()
    if scratch not in set(data.indices) | set(other.indices if other else ()):
        await es.delete_index(scratch)


async def _template(api: Api, redis: Redis, space: SeededSpace) -> seed.JobTemplate:
    job = {"name": "resize", "payload": JOB_PAYLOAD, "maxRetries": 3, "timeoutSeconds": 600}
    [created] = await api.create_jobs(space.space_id, [job])
    return await seed.template_of(redis, space.space_id, created["id"])


async def _run_jobs(api: Api, space: SeededSpace) -> RunJobs:
    plain = {"name": "bench-ingest", "payload": {"run": int(time.time())}}
    created = await api.create_jobs(space.space_id, [plain] * (P1_WRITERS + 3 + FANOUT_JOBS))
    ids = [job["id"] for job in created]
    meta = await _meta_job(api, space)
    capture, fresh, fresh_stream, *fanout = ids[P1_WRITERS:]
    return RunJobs(space, tuple(ids[:P1_WRITERS]), capture, meta, fresh, fresh_stream, tuple(fanout))


async def _meta_job(api: Api, space: SeededSpace) -> str:
    """A running job as a dashboard sees it: callback, five events, sub-progress."""
    job = {
        "name": "resize",
        "payload": JOB_PAYLOAD,
        "timeoutSeconds": 86400,  # stays running even where a sweep runs on the same Redis
        "callbackUrl": "https://hooks.example.com/joblens/done",
        "callbackHeaders": {"Authorization": "Bearer 0123456789abcdef"},
    }
    [created] = await api.create_jobs(space.space_id, [job])
    path = f"/api/v1/jobs/{created['id']}"
    await api.call("POST", f"{path}/claim")
    await api.call("POST", f"{path}/ack")
    for step in (1, 2):
        await api.call("POST", f"{path}/checkpoint", {"step": step, "done": [320, 640][:step]})
    progress = {"percent": 42, "message": "resizing 640w", "subProgress": {"download": {"percent": 100}}}
    await api.call("POST", f"{path}/progress", progress)
    return str(created["id"])


async def _start_bare(exits: contextlib.AsyncExitStack, api: Api, job_id: str, es_url: str) -> Proc:
    """The bare app answers with the service's own bodies, so sizes match exactly, and forwards to ``es_url``."""
    bodies = {
        "job": (await api.raw("GET", f"/api/v1/jobs/{job_id}")).decode(),
        "progress": (await api.raw("GET", f"/api/v1/jobs/{job_id}/progress")).decode(),
    }
    path = RESULTS_DIR / "bare-bodies.json"
    path.write_bytes(orjson.dumps(bodies))
    bare = _started(exits, start_bare(path, RESULTS_DIR, es_url))
    await wait_http(bare, "/healthz")
    return bare


# --------------------------------------------------------------------------- recording the ES requests


def tail_paths(data: Dataset, count: int, rng: random.Random) -> list[tuple[LogJob, str]]:
    """Tail pages of random jobs from a random point (full pages where the job is long enough)."""
    chosen = []
    for job in rng.choices(data.jobs, k=count):
        after = rng.randint(0, max(0, job.lines - TAIL_LIMIT))
        chosen.append((job, f"/api/v1/jobs/{job.id}/logs?after={after}&limit={TAIL_LIMIT}"))
    return chosen


def search_paths(data: Dataset, count: int, rng: random.Random) -> list[tuple[LogJob, str]]:
    """Two-word searches with a level filter over jobs of at least 1,000 lines (the latest matching page)."""
    big = [job for job in data.jobs if job.lines >= 1000] or list(data.jobs)
    chosen = []
    for job in rng.choices(big, k=count):
        text, levels = rng.choice(SEARCHES)
        chosen.append((job, f"/api/v1/jobs/{job.id}/logs?{urlencode({'q': text, 'level': levels})}"))
    return chosen


async def _capture(
    proxy: RecordingProxy,
    instance: Proc,
    profile: Profile,
    session: aiohttp.ClientSession,
    data: Dataset,
    log_space: SeededSpace,
    run: RunJobs,
) -> Captures:
    """Make the read and append calls once through the capture instance, recording what reaches ES."""
    started = time.monotonic()
    proxy.take()
    reader = Api(session, instance.base_url, log_space.api_key)
    rng = random.Random(profile.name)
    tail = await _record_reads(reader, proxy, proxy.upstream, tail_paths(data, profile.distinct_queries, rng))
    search = await _record_reads(reader, proxy, proxy.upstream, search_paths(data, profile.distinct_queries, rng))
    writer = Api(session, instance.base_url, run.space.api_key)
    ingest, bulk = await _record_ingest(writer, proxy, proxy.upstream, run)
    space = await _record_space_searches(reader, proxy, proxy.upstream, space_paths(data, profile.space_queries, rng))
    export = await _record_exports(reader, proxy, proxy.upstream, data, profile.export_jobs)
    recorded = len(tail) + len(search) + P1_BODIES + len(space) + len(export)
    log(f"recorded {recorded} ES requests in {time.monotonic() - started:.1f} s")
    return Captures(tuple(tail), tuple(search), ingest, bulk, tuple(space), tuple(export))


def space_paths(data: Dataset, count: int, rng: random.Random) -> list[str]:
    """Space searches the way a person starts one: two words and a level over a week (of the dataset's months)."""
    first_ms = min(job.created_ms for job in data.jobs)
    last_ms = max(job.created_ms for job in data.jobs)
    paths = []
    for _ in range(count):
        text, levels = rng.choice(SEARCHES)
        since_ms = rng.randint(first_ms, max(first_ms, last_ms - SPACE_WINDOW_MS))
        window = {"since": _iso(since_ms), "until": _iso(since_ms + SPACE_WINDOW_MS)}
        query = {"q": text, "level": levels, **window, "limit": SPACE_LIMIT}
        paths.append(f"/api/v1/spaces/{data.space_id}/logs?{urlencode(query)}")
    return paths


def _iso(ms: int) -> str:
    return IsoClock().iso(ms)


async def _record_space_searches(
    reader: Api, proxy: RecordingProxy, es_url: str, paths: list[str]
) -> list[tuple[Call, Call]]:
    headers = tuple(reader.headers.items())
    pairs = []
    for path in paths:
        await reader.raw("GET", path)
        searches = [record for record in proxy.take() if "/_search" in record.path_qs]
        if not searches:
            raise RuntimeError(f"GET {path} caused no ES search")
        pairs.append((Call("GET", path, headers), _es_call(es_url, searches[0])))
    return pairs


async def _record_exports(
    reader: Api, proxy: RecordingProxy, es_url: str, data: Dataset, count: int
) -> list[ExportCapture]:
    """The largest jobs' exports, each made once through the capture instance."""
    headers = tuple(reader.headers.items())
    captures = []
    for job in sorted(data.jobs, key=lambda job: job.lines, reverse=True)[:count]:
        path = f"/api/v1/jobs/{job.id}/logs/export"
        exported = (await reader.raw("GET", path)).count(b"\n")
        if exported != job.lines:
            raise RuntimeError(f"export of {job.id} gave {exported} lines, expected {job.lines}")
        searches = [record for record in proxy.take() if "/_search" in record.path_qs]
        captures.append(ExportCapture(path, headers, job.lines, _es_call(es_url, searches[0])))
    return captures


def _es_call(es_url: str, record: Recorded) -> Call:
    return Call(record.method, es_url + record.path_qs, record.headers, record.body or None)


async def _record_reads(
    reader: Api, proxy: RecordingProxy, es_url: str, paths: list[tuple[LogJob, str]]
) -> list[tuple[Call, Call]]:
    """Groups of concurrent reads of distinct jobs; each ES search is matched to its read by its routing."""
    headers = tuple(reader.headers.items())
    pairs: dict[int, tuple[Call, Call]] = {}
    for group in _distinct_job_groups(paths, RECORD_CONCURRENCY):
        await asyncio.gather(*(reader.raw("GET", paths[i][1]) for i in group))
        by_job: dict[str, list[Recorded]] = {}
        for record in proxy.take():
            if "/_search" in record.path_qs:
                by_job.setdefault(_routing(record), []).append(record)
        for i in group:
            job, path = paths[i]
            searches = by_job.get(job.id, [])
            if len(searches) != 1:
                raise RuntimeError(f"GET {path} caused {len(searches)} ES searches; expected exactly one")
            pairs[i] = (Call("GET", path, headers), _es_call(es_url, searches[0]))
    return [pairs[i] for i in range(len(paths))]


def _distinct_job_groups(paths: list[tuple[LogJob, str]], size: int) -> list[list[int]]:
    groups: list[list[int]] = [[]]
    jobs: set[str] = set()
    for i, (job, _) in enumerate(paths):
        if len(groups[-1]) == size or job.id in jobs:
            groups.append([])
            jobs.clear()
        groups[-1].append(i)
        jobs.add(job.id)
    return groups


def _routing(record: Recorded) -> str:
    return parse_qs(urlsplit(record.path_qs).query).get("routing", [""])[0]


def ingest_bodies(count: int, lines: int, seed_value: int) -> list[bytes]:
    """API bodies of ``lines`` lines each, the way workers send them (level, source, metadata, loggedAt)."""
    gen = LineGen(random.Random(seed_value))
    clock = IsoClock()
    now_ms = int(time.time() * 1000)
    bodies = []
    for _ in range(count):
        logs: list[dict[str, Any]] = []
        for i in range(lines):
            level, message = gen.line()
            source, metadata = line_extras(gen)
            line: dict[str, Any] = {"message": message, "level": level, "loggedAt": clock.iso(now_ms + i)}
            if source is not None:
                line["source"] = source
            if metadata is not None:
                line["metadata"] = metadata
            logs.append(line)
        bodies.append(orjson.dumps({"logs": logs}))
    return bodies


async def _record_ingest(
    writer: Api, proxy: RecordingProxy, es_url: str, run: RunJobs
) -> tuple[ApiWriters, BulkTemplate]:
    """Post the P1 batches once through the capture instance; the recorded ``_bulk`` requests become the
    baseline's template, checked to reproduce each recorded body byte for byte."""
    bodies = ingest_bodies(P1_BODIES, P1_LINES, 1)
    path = f"/api/v1/jobs/{run.capture}/logs"
    answers = await asyncio.gather(*(writer.call("POST", path, body) for body in bodies))
    by_first_seq = {_first_seq(r): r for r in proxy.take() if "/_bulk" in r.path_qs}
    if len(by_first_seq) != len(bodies):
        raise RuntimeError(f"{len(bodies)} appends caused {len(by_first_seq)} _bulk requests; expected one each")
    recorded = [(by_first_seq[int(answer["firstSeq"])], int(answer["firstSeq"])) for answer in answers]
    template = _bulk_template(es_url, run.capture, recorded)
    for batch, (record, first_seq) in enumerate(recorded):
        if template.body(batch, run.capture, first_seq) != record.body:
            raise RuntimeError("the service's _bulk body changed shape: bench.loadgen.BulkTemplate must follow it")
    headers = (*writer.headers.items(), ("Content-Type", "application/json"))
    return ApiWriters((), tuple(headers), tuple(bodies)), template


def _first_seq(record: Recorded) -> int:
    action = orjson.loads(record.body.split(b"\n", 1)[0])
    return int(next(iter(action.values()))["_id"].rsplit(":", 1)[1])


def _bulk_template(es_url: str, job_id: str, recorded: list[tuple[Recorded, int]]) -> BulkTemplate:
    first = recorded[0][0]
    if job_id not in first.path_qs:
        raise RuntimeError(f"the service's _bulk no longer routes by job id: {first.path_qs}")
    index = orjson.loads(first.body.split(b"\n", 1)[0])["create"]["_index"]
    job = job_id.encode()
    docs = []
    for record, _ in recorded:
        lines = record.body.rstrip(b"\n").split(b"\n")
        docs.append(tuple(doc.rsplit(b',"seq":', 1)[0].replace(job, b"@JOB@") for doc in lines[1::2]))
    return BulkTemplate(es_url, first.path_qs.replace(job_id, BulkTemplate.JOB), first.headers, index, tuple(docs))


def results_paths(profile: Profile) -> tuple[Path, Path]:
    """``latest.json`` (whichever run was last) and ``latest-<profile>.json``."""
    return RESULTS_DIR / "latest.json", RESULTS_DIR / f"latest-{profile.name}.json"
