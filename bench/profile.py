"""Profile the service under one benchmark's load with py-spy (``pip install py-spy`` into the venv first).

``python -m bench.profile [--quick] {progress,job,tail,search,list,ingest} [--seconds N]`` prepares exactly
as a run does, loads only the service, records it with ``py-spy record --format raw`` and prints where the
time goes (inclusive and self, by function). Raw stacks: ``bench/results/profile-<load>.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import wrk
from bench.loadgen import Call, IngestPlan, LatencyPlan, run_ingest, run_latency
from bench.prepare import P1_LINES, P1_WRITERS, Ctx, prepare
from bench.profiles import FULL, QUICK
from bench.report import RESULTS_DIR

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
Load = Callable[[Ctx, float, int], Awaitable[int]]  # (ctx, seconds, clients) → requests made


async def _wrk(ctx: Ctx, path: str, seconds: float, clients: int) -> int:
    assert ctx.wrk is not None, "wrk is needed for this load"
    url = ctx.service.base_url + path
    got = await asyncio.to_thread(wrk.run, ctx.wrk, url, {"x-api-key": ctx.run.space.api_key}, seconds, clients)
    return got.requests


async def _reads(ctx: Ctx, pairs: tuple[tuple[Call, Call], ...], seconds: float, clients: int) -> int:
    calls = tuple(dataclasses.replace(call, url=ctx.service.base_url + call.url) for call, _ in pairs)
    plan = LatencyPlan((("service", calls),), 10**6, clients, 1, 0, seconds)
    return len((await ctx.loadgen.run(run_latency, plan, seconds + 60)).ms["service"])


async def _list(ctx: Ctx, seconds: float, clients: int) -> int:
    space = ctx.lists[-1]
    url = f"{ctx.service.base_url}/api/v1/spaces/{space.space_id}/jobs?status=completed&limit=50"
    calls = (Call("GET", url, (("x-api-key", space.api_key),)),)
    plan = LatencyPlan((("service", calls),), 10**6, clients, 1, 0, seconds)
    return len((await ctx.loadgen.run(run_latency, plan, seconds + 60)).ms["service"])


async def _ingest(ctx: Ctx, seconds: float, clients: int) -> int:
    urls = tuple(f"{ctx.service.base_url}/api/v1/jobs/{job}/logs" for job in ctx.run.writers)
    writers = dataclasses.replace(ctx.captures.ingest, urls=urls)
    plan = IngestPlan((("service", writers),), min(clients, P1_WRITERS), P1_LINES, seconds, 1, 0, 10**6)
    return len((await ctx.loadgen.run(run_ingest, plan, seconds + 60)).call_ms["service"])


LOADS: dict[str, Load] = {
    "progress": lambda ctx, s, c: _wrk(ctx, f"/api/v1/jobs/{ctx.run.meta}/progress", s, c),
    "job": lambda ctx, s, c: _wrk(ctx, f"/api/v1/jobs/{ctx.run.meta}", s, c),
    "tail": lambda ctx, s, c: _reads(ctx, ctx.captures.tail, s, c),
    "search": lambda ctx, s, c: _reads(ctx, ctx.captures.search, s, c),
    "list": _list,
    "ingest": _ingest,
}


def summarize(raw: Path, top: int = 30) -> str:
    """Inclusive and self sample shares by function, from py-spy's raw (collapsed) stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    out = [f"{total} samples (active, not idle)", "", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({path})"


async def profile(quick: bool, load: str, seconds: float, clients: int, gil: bool) -> int:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():  # noqa: ASYNC240 - once, before anything runs
        sys.exit("bench.profile: py-spy not found; `.venv/bin/pip install py-spy`")
    raw = RESULTS_DIR / f"profile-{load}.txt"
    async with contextlib.AsyncExitStack() as exits:
        ctx = await prepare(QUICK if quick else FULL, exits)
        command = [pyspy, "record", "--pid", str(ctx.service.popen.pid), "--rate", "200", "--format", "raw"]
        command += ["--output", str(raw), "--duration", str(int(seconds) + 1), *(["--gil"] if gil else [])]
        recorder = subprocess.Popen(command)  # noqa: ASYNC220 - started once, waited for below
        await asyncio.sleep(1.0)
        cpu_before = ctx.service.cpu_s()
        requests = await LOADS[load](ctx, seconds, clients)
        cpu = ctx.service.cpu_s() - cpu_before
        await asyncio.to_thread(recorder.wait, seconds + 30)
    per_request = 1000 * cpu / max(1, requests)
    print(
        f"service CPU during the load: {cpu:.1f} s of {seconds:.0f} s; {requests} requests, {per_request:.2f} ms each"
    )
    print(summarize(raw))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("load", choices=sorted(LOADS))
    parser.add_argument("--quick", action="store_true", help="use the quick profile's data")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (wrk connections)")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (on-CPU Python)")
    args = parser.parse_args()
    sys.exit(asyncio.run(profile(args.quick, args.load, args.seconds, args.clients, args.gil)))


if __name__ == "__main__":
    main()
