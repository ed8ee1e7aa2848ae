"""The read benchmarks' log data: planned once, bulk-loaded straight into Elasticsearch, reused while it is there.

A dataset is ``jobs`` log jobs (ids, createdAt, line counts; sizes lognormal, so a long tail) in one space. Its
lines live where the service reads them: index ``<prefix>-YYYY.MM`` of the job's createdAt, ``_id =
<jobId>:<seq>``, routing = job id, the document shape `service.domain.logs` builds. The plan is kept in
``bench/data/dataset-<profile>.json``; the data is reused when Elasticsearch still holds exactly that many lines
of the dataset's space (``space_id`` is the marker) and the service's index template is still the one the data
was loaded under (a changed template, e.g. another codec, only applies to new indices: the data is reloaded).
A partial or lost load is redone from the same plan.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import hashlib
import math
import multiprocessing
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.es import Es, EsError
from bench.profiles import Profile
from bench.textgen import IsoClock, LineGen, line_extras, ulid_at
from service.domain.search import search_fields

DATA_DIR = Path(__file__).resolve().parent / "data"
FORMAT_VERSION = 2
CHUNK_LINES = 5000
BULK_CONCURRENCY = 3
GENERATOR_PROCESSES = 2
LOAD_SETTINGS = {"refresh_interval": "-1", "number_of_replicas": 0, "translog.durability": "async"}
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class LogJob:
    id: str
    created_ms: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dataset:
    profile: str
    prefix: str
    space_id: str
    seed: int
    months: tuple[str, ...]  # "YYYY.MM", oldest first
    jobs: tuple[LogJob, ...]
    template: str  # fingerprint of the service's index template the indices were created with

    @property
    def total_lines(self) -> int:
        return sum(job.lines for job in self.jobs)

    def index_of(self, job: LogJob) -> str:
        return f"{self.prefix}-{time.strftime('%Y.%m', time.gmtime(job.created_ms // 1000))}"

    @property
    def indices(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}-{month}" for month in self.months)


# --------------------------------------------------------------------------- plan and metadata file


def metadata_path(profile: str) -> Path:
    return DATA_DIR / f"dataset-{profile}.json"


def save(dataset: Dataset) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    document = {"version": FORMAT_VERSION, **asdict(dataset)}
    document["jobs"] = [[job.id, job.created_ms, job.lines] for job in dataset.jobs]
    metadata_path(dataset.profile).write_bytes(orjson.dumps(document))


def load_metadata(profile: str) -> Dataset | None:
    path = metadata_path(profile)
    if not path.is_file():
        return None
    try:
        document = orjson.loads(path.read_bytes())
        if document.get("version") != FORMAT_VERSION:
            return None
        jobs = tuple(LogJob(str(i), int(c), int(n)) for i, c, n in document["jobs"])
        return Dataset(
            profile=document["profile"],
            prefix=document["prefix"],
            space_id=document["space_id"],
            seed=int(document["seed"]),
            months=tuple(document["months"]),
            jobs=jobs,
            template=str(document["template"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def fits(dataset: Dataset, profile: Profile, prefix: str) -> bool:
    return (
        dataset.prefix == prefix and len(dataset.jobs) == profile.log_jobs and dataset.total_lines == profile.log_lines
    )


def plan(profile: Profile, prefix: str, avoid_months: set[str], template: str) -> Dataset:
    """A new dataset: job ids, createdAt (spread over whole past months) and lognormal line counts."""
    seed = time.time_ns() & 0xFFFFFFFF
    rng = random.Random(seed)
    months = _months(profile, avoid_months)
    created = sorted(_random_ms_in(rng, rng.choice(months)) for _ in range(profile.log_jobs))
    sizes = job_sizes(rng, profile.log_jobs, profile.log_lines)
    jobs = tuple(LogJob(ulid_at(ms, rng), ms, size) for ms, size in zip(created, sizes, strict=True))
    space_id = ulid_at(created[0] - 86_400_000, rng)
    month_names = tuple(f"{y:04d}.{m:02d}" for y, m in months)
    return Dataset(profile.name, prefix, space_id, seed, month_names, jobs, template)


def job_sizes(rng: random.Random, jobs: int, total: int, sigma: float = 1.6, minimum: int = 20) -> list[int]:
    """Lognormal line counts (median ≈ a quarter of the mean, a heavy tail) adding up to ``total``."""
    weights = [rng.lognormvariate(0.0, sigma) for _ in range(jobs)]
    scale = (total - minimum * jobs) / sum(weights)
    sizes = [minimum + int(w * scale) for w in weights]
    sizes[max(range(jobs), key=sizes.__getitem__)] += total - sum(sizes)
    return sizes


def _months(profile: Profile, avoid: set[str]) -> list[tuple[int, int]]:
    now = time.gmtime()
    first = now.tm_year * 12 + now.tm_mon - 1 - profile.months_back
    while True:
        months = [divmod(first - k, 12) for k in range(profile.months)]
        chosen = sorted((year, month + 1) for year, month in months)
        if not {f"{y:04d}.{m:02d}" for y, m in chosen} & avoid:
            return chosen
        first -= 12


def _random_ms_in(rng: random.Random, year_month: tuple[int, int]) -> int:
    year, month = year_month
    start = calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) * 1000
    days = calendar.monthrange(year, month)[1]
    return start + int(rng.random() * (days - 1) * 86_400_000)


# --------------------------------------------------------------------------- documents


DATASET_JOB_NAME = "jlbench-log"  # the name beside each line (the seeded Redis records keep their template's)


@dataclass(frozen=True, slots=True)
class Piece:
    """Seqs ``first..last`` of one job (a chunk holds whole small jobs and slices of large ones)."""

    index: str
    job_id: str
    created_ms: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Chunk:
    space_id: str
    seed: int
    pieces: tuple[Piece, ...]


def chunks(dataset: Dataset, size: int = CHUNK_LINES) -> Iterator[Chunk]:
    pieces: list[Piece] = []
    filled = 0
    for job in dataset.jobs:
        seq = 1
        while seq <= job.lines:
            take = min(job.lines - seq + 1, size - filled)
            pieces.append(Piece(dataset.index_of(job), job.id, job.created_ms, seq, seq + take - 1))
            filled += take
            seq += take
            if filled == size:
                yield Chunk(dataset.space_id, dataset.seed, tuple(pieces))
                pieces, filled = [], 0
    if pieces:
        yield Chunk(dataset.space_id, dataset.seed, tuple(pieces))


def make_chunk(chunk: Chunk) -> bytes:
    """The ``_bulk`` body of one chunk (runs in a generator process)."""
    out: list[bytes] = []
    clock = IsoClock()
    for piece in chunk.pieces:
        job_rng = random.Random(f"{chunk.seed}:{piece.job_id}")
        start_ms = piece.created_ms + job_rng.randint(500, 5000)
        step_ms = job_rng.choice((15, 60, 250, 1200))
        gen = LineGen(random.Random(f"{chunk.seed}:{piece.job_id}:{piece.first}"))
        action_head = f'{{"index":{{"_index":"{piece.index}","routing":"{piece.job_id}","_id":"{piece.job_id}:'
        for seq in range(piece.first, piece.last + 1):
            logged_ms = start_ms + seq * step_ms + int(gen.rng.random() * step_ms)
            received_ms = logged_ms + 20 + gen.num(900)
            level, message = gen.line()
            source, metadata = line_extras(gen)
            fields = search_fields(message)  # what the service adds at ingest (`service.domain.logs.build_docs`)
            doc = {
                "id": ulid_at(received_ms, gen.rng),
                "job_id": piece.job_id,
                "space_id": chunk.space_id,
                "level": level,
                "message": message,
                "words": fields.words,
                "joins": fields.joins,
                "source": source,
                "metadata": metadata,
                "logged_at": clock.iso(logged_ms),
                "created_at": clock.iso(received_ms),
                "job_name": DATASET_JOB_NAME,
                "seq": seq,
            }
            out.append(f'{action_head}{seq}"}}}}'.encode())
            out.append(orjson.dumps(doc))
    out.append(b"")
    return b"\n".join(out)


# --------------------------------------------------------------------------- loading


async def stored_lines(es: Es, dataset: Dataset) -> int:
    return await es.count(f"{dataset.prefix}-*", {"term": {"space_id": dataset.space_id}})


async def template_fingerprint(es: Es, prefix: str) -> str:
    """What the service installed as index template ``prefix`` (settings and mappings), hashed."""
    answer = await es.call("GET", f"/_index_template/{prefix}")
    body = answer["index_templates"][0]["index_template"]["template"]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


async def ensure(es: Es, profile: Profile, prefix: str, other: Dataset | None) -> tuple[Dataset, float]:
    """The profile's dataset, loaded; returns it and the seconds spent loading (0 when reused)."""
    template = await template_fingerprint(es, prefix)
    dataset = load_metadata(profile.name)
    if dataset is not None and fits(dataset, profile, prefix) and dataset.template == template:
        stored = await stored_lines(es, dataset)
        if stored == dataset.total_lines:
            return dataset, 0.0
        print(f"bench: dataset {profile.name}: {stored}/{dataset.total_lines} lines stored; reloading", file=sys.stderr)
    elif dataset is not None and fits(dataset, profile, prefix):
        print(f"bench: dataset {profile.name}: the index template changed; reloading", file=sys.stderr)
        for index in dataset.indices:
            await es.delete_index(index)
        dataset = dataclasses.replace(dataset, template=template)
        save(dataset)
    else:
        keep = set(other.indices) if other is not None else set()
        dataset = plan(profile, prefix, {index.removeprefix(prefix + "-") for index in keep}, template)
        await _delete_stale_indices(es, prefix, keep)
        save(dataset)
    started = time.monotonic()
    await load(es, dataset)
    stored = await stored_lines(es, dataset)
    if stored != dataset.total_lines:
        raise EsError(f"dataset {profile.name}: {stored} lines stored after loading {dataset.total_lines}")
    return dataset, time.monotonic() - started


async def _delete_stale_indices(es: Es, prefix: str, keep: set[str]) -> None:
    for index in await es.index_names(f"{prefix}-*"):
        if index not in keep:
            await es.delete_index(index)


async def load(es: Es, dataset: Dataset) -> None:
    print(
        f"bench: loading {dataset.total_lines:,} log lines of {len(dataset.jobs):,} jobs into "
        f"{', '.join(dataset.indices)} (cold run: this is data generation, not measurement)",
        file=sys.stderr,
    )
    saved = await _prepare_indices(es, dataset)
    try:
        await _bulk_all(es, dataset)
    finally:
        for index, settings in saved.items():
            await es.call("PUT", f"/{index}/_settings", {"index": settings})
    await es.call("POST", f"/{','.join(dataset.indices)}/_refresh")


async def _prepare_indices(es: Es, dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Create the indices (the service's template applies) and relax them for loading; returns what to restore."""
    saved: dict[str, dict[str, Any]] = {}
    for index in dataset.indices:
        await es.call("PUT", f"/{index}", allow=(200, 400))  # 400: it exists already
        current = await es.call(
            "GET", f"/{index}/_settings", params={"include_defaults": "true", "flat_settings": "true"}
        )
        flat = {**current[index].get("defaults", {}), **current[index]["settings"]}
        saved[index] = {key: flat[f"index.{key}"] for key in LOAD_SETTINGS}
        await es.call("PUT", f"/{index}/_settings", {"index": LOAD_SETTINGS})
    return saved


async def _bulk_all(es: Es, dataset: Dataset) -> None:
    loop = asyncio.get_running_loop()
    pending = chunks(dataset)
    progress = _Progress(dataset.total_lines)
    with ProcessPoolExecutor(GENERATOR_PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:

        async def sender() -> None:
            for chunk in pending:
                body = await loop.run_in_executor(pool, make_chunk, chunk)
                await bulk(es, body)
                progress.add(sum(piece.last - piece.first + 1 for piece in chunk.pieces))

        await asyncio.gather(*(sender() for _ in range(BULK_CONCURRENCY)))


async def bulk(es: Es, body: bytes, attempts: int = 6) -> None:
    """One ``_bulk``; failed items are resent (with backoff) while their failure is transient."""
    delay_s = 0.5
    for _ in range(attempts):
        status, raw = await es.raw("POST", "/_bulk", body, ndjson=True, params={"filter_path": "errors,items.*.status"})
        if status in RETRYABLE:
            await asyncio.sleep(delay_s)
            delay_s *= 2
            continue
        if status != 200:
            raise EsError(f"_bulk answered {status}: {raw[:300]!r}")
        answer = orjson.loads(raw)
        if not answer.get("errors"):
            return
        statuses = [next(iter(item.values()))["status"] for item in answer["items"]]
        if any(s >= 300 and s not in RETRYABLE for s in statuses):
            raise EsError(f"_bulk item failed: {raw[:300]!r}")
        lines = body.split(b"\n")
        body = b"\n".join([*(b for i, s in enumerate(statuses) if s >= 300 for b in lines[2 * i : 2 * i + 2]), b""])
        await asyncio.sleep(delay_s)
        delay_s *= 2
    raise EsError("_bulk kept failing")


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.next_report = 0.1

    def add(self, lines: int) -> None:
        self.done += lines
        if self.done / self.total >= self.next_report:
            rate = self.done / max(1e-9, time.monotonic() - self.started)
            eta = (self.total - self.done) / max(rate, 1.0)
            print(f"bench:   {self.done:,} lines ({rate:,.0f}/s, ~{math.ceil(eta)} s left)", file=sys.stderr)
            self.next_report += 0.1
