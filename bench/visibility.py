"""How a reader can see lines that are acknowledged but not yet searchable, measured on Elasticsearch alone.

``python -m bench.visibility refresh|mget|idle [--interval 1s] [--no-sort] [--seconds 4]``: a scratch index made
from the service's template (``--interval`` its scheduled refresh, ``--no-sort`` without the index sort), 4
writers ``_bulk`` 10-line batches into one job back to back (``create``, routing = job, as the service does), and
one reader follows them every 10 ms the way a tail read would: ``refresh`` asks for ``_refresh`` whenever new
lines were acknowledged (what a read did before it read them by id), ``mget`` reads the new lines by id with a
realtime ``_mget`` (checking that every one is found), ``idle`` reads nothing. Prints the reader's call latency,
the lines written (ingest under that reader) and the index's refresh count and time; the index is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson

from bench.es import Es
from bench.stats import percentile

TEMPLATE = Path(__file__).resolve().parent.parent / "index_templates" / "joblogs.json"
WRITERS = 4
LINES_PER_BULK = 10
READ_PAUSE_S = 0.01
JOB = "01JOBVISIBILITYPROBE0000000"


def _document(seq: int) -> bytes:
    message = f"fresh line {seq} of the visibility probe"
    return orjson.dumps(
        {
            "id": f"line-{seq}",
            "job_id": JOB,
            "space_id": "probe",
            "seq": seq,
            "level": "info",
            "message": message,
            "words": message,
            "logged_at": "2026-01-01T00:00:00.000Z",
            "created_at": "2026-01-01T00:00:00.000Z",
        }
    )


class Probe:
    def __init__(self, es: Es, index: str, mode: str, seconds: float) -> None:
        self.es, self.index, self.mode = es, index, mode
        self.stop_at = time.perf_counter() + seconds
        self.reserved = 0
        self.durable = 0  # every seq up to it is acknowledged
        self.done: set[int] = set()
        self.read_ms: list[float] = []

    async def write(self) -> None:
        while time.perf_counter() < self.stop_at:
            first = self.reserved + 1
            self.reserved += LINES_PER_BULK
            seqs = range(first, first + LINES_PER_BULK)
            action = b'{"create":{"_index":"%s","_id":"%s:%d"}}\n'
            body = b"".join(action % (self.index.encode(), JOB.encode(), seq) + _document(seq) + b"\n" for seq in seqs)
            status, answer = await self.es.raw("POST", f"/_bulk?routing={JOB}&filter_path=errors", body, ndjson=True)
            if status != 200 or orjson.loads(answer).get("errors"):
                raise RuntimeError(f"bulk failed: {status} {answer[:200]!r}")
            self.done.update(seqs)
            while self.durable + 1 in self.done:
                self.durable += 1

    async def read(self) -> None:
        seen = 0
        while time.perf_counter() < self.stop_at:
            durable = self.durable
            if self.mode != "idle" and durable > seen:
                started = time.perf_counter()
                if self.mode == "refresh":
                    await self.es.call("POST", f"/{self.index}/_refresh")
                else:
                    await self._read_by_id(seen, durable)
                self.read_ms.append((time.perf_counter() - started) * 1000)
                seen = durable
            await asyncio.sleep(READ_PAUSE_S)

    async def _read_by_id(self, after: int, through: int) -> None:
        ids = [f"{JOB}:{seq}" for seq in range(after + 1, through + 1)]
        params = {"routing": JOB, "_source_includes": "seq", "filter_path": "docs.found"}
        answer = await self.es.call("POST", f"/{self.index}/_mget", {"ids": ids}, params=params)
        if not all(doc["found"] for doc in answer["docs"]):
            raise RuntimeError("an acknowledged line was not found by id")


async def run(mode: str, interval: str, sort: bool, seconds: float) -> dict[str, Any]:
    template: dict[str, Any] = orjson.loads(TEMPLATE.read_bytes())["template"]
    settings = dict(template["settings"]["index"]) | {"refresh_interval": interval}
    if not sort:
        settings = {name: value for name, value in settings.items() if not name.startswith("sort.")}
    index = f"jlprobe-visibility-{os.getpid()}"
    async with Es(os.environ["JOBLENS_ELASTICSEARCH_URL"]) as es:
        await es.call("PUT", f"/{index}", {"settings": {"index": settings}, "mappings": template["mappings"]})
        try:
            probe = Probe(es, index, mode, seconds)
            await asyncio.gather(probe.read(), *(probe.write() for _ in range(WRITERS)))
            stats = await es.call("GET", f"/{index}/_stats/refresh,segments", params={"filter_path": "_all.primaries"})
        finally:
            await es.delete_index(index)
    primaries = stats["_all"]["primaries"]
    refresh = primaries["refresh"]
    return {
        "mode": mode,
        "interval": interval,
        "index_sort": sort,
        "reads": len(probe.read_ms),
        "read_p50_ms": round(percentile(probe.read_ms, 50), 1) if probe.read_ms else None,
        "read_p95_ms": round(percentile(probe.read_ms, 95), 1) if probe.read_ms else None,
        "lines_written": probe.reserved,
        "refreshes": refresh["total"],
        "refresh_ms": refresh["total_time_in_millis"],
        "segments": primaries["segments"]["count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("refresh", "mget", "idle"))
    parser.add_argument("--interval", default="1s", help="the index's scheduled refresh_interval (-1: none)")
    parser.add_argument("--no-sort", action="store_true", help="without the template's index sort")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args.mode, args.interval, not args.no_sort, args.seconds))).decode())


if __name__ == "__main__":
    main()
