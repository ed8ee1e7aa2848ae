"""``python -m bench.run [--quick] [--only P6,P7]``: prepare, run P1-P7 and M, print one table, write the JSON.

Needs JOBLENS_REDIS_URL and JOBLENS_ELASTICSEARCH_URL (``make bench`` / ``make bench-quick`` bring the local
stack up and export them). Exit status 1 when a scenario failed, was skipped for time, or saw request errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
import traceback
from typing import Any

from bench.prepare import Ctx, log, prepare, results_paths
from bench.profiles import FULL, QUICK, Profile
from bench.report import Row, machine, table, write_json
from bench.scenarios import SCENARIOS


async def run_scenarios(ctx: Ctx, only: frozenset[str] = frozenset()) -> tuple[list[Row], dict[str, Any], bool]:
    rows: list[Row] = []
    details: dict[str, Any] = {}
    healthy = True
    for scenario in SCENARIOS:
        if only and scenario.id not in only:
            continue
        needed = scenario.estimate_s(ctx)
        if needed > ctx.remaining():
            ctx.notes.append(f"{scenario.id} skipped: needs ~{needed:.0f} s, {ctx.remaining():.0f} s left")
            healthy = False
            continue
        started = time.monotonic()
        try:
            scenario_rows, details[scenario.id] = await scenario.run(ctx)
        except Exception as exc:
            traceback.print_exc()
            ctx.notes.append(f"{scenario.id} failed: {exc!r}")
            healthy = False
            continue
        details[scenario.id]["seconds"] = round(time.monotonic() - started, 1)
        rows += scenario_rows
        log(f"{scenario.id} done in {time.monotonic() - started:.1f} s")
    return rows, details, healthy


def summary(ctx: Ctx, details: dict[str, Any], wall_s: float) -> dict[str, Any]:
    data = ctx.dataset
    tool = f"{ctx.versions['wrk']} (P4), aiohttp client in its own process" if ctx.wrk else "aiohttp client"
    return {
        "profile": ctx.profile.name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall_s, 1),
        "data_generation_s": round(ctx.data_s, 1),
        "redis_seed_s": round(ctx.seed_s, 1),
        "budget_s": ctx.profile.budget_s,
        "machine": machine(ctx.versions["es"], ctx.versions["redis"], tool),
        "data": {
            "log_lines": data.total_lines,
            "log_jobs": len(data.jobs),
            "largest_job_lines": max(job.lines for job in data.jobs),
            "median_job_lines": sorted(job.lines for job in data.jobs)[len(data.jobs) // 2],
            "indices": list(data.indices),
            "list_spaces_jobs": [space.jobs for space in ctx.lists],
            "reused": ctx.data_s == 0,
        },
        "method": {
            "rounds": ctx.profile.rounds,
            "warmup_requests": ctx.profile.warmup,
            "alternation": "service and baseline alternate per round, order flipped every round",
            "baselines": "ES requests recorded from a capture instance of the service and replayed byte for byte",
        },
        "notes": ctx.notes,
        "details": details,
    }


async def main_async(profile: Profile, only: frozenset[str] = frozenset()) -> int:
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as exits:
        ctx = await prepare(profile, exits)
        log(f"ready after {time.monotonic() - started:.1f} s; {ctx.remaining():.0f} s of budget left")
        rows, details, healthy = await run_scenarios(ctx, only)
    wall_s = time.monotonic() - started
    document = summary(ctx, details, wall_s)
    for path in results_paths(profile):
        write_json(path, document, rows)
    print_report(ctx, rows, wall_s)
    return 0 if healthy and not ctx.notes else 1


def print_report(ctx: Ctx, rows: list[Row], wall_s: float) -> None:
    m = machine(ctx.versions["es"], ctx.versions["redis"], "")
    print()
    print(
        f"joblens bench ({ctx.profile.name}): {ctx.dataset.total_lines:,} log lines / {len(ctx.dataset.jobs):,} jobs, "
        f"list spaces {' and '.join(f'{s.jobs:,}' for s in ctx.lists)} jobs; {m['cores']} cores, "
        f"{m['memory_mib']:,} MiB; Python {m['python']}, aiohttp {m['aiohttp']}, ES {m['elasticsearch_server']} "
        f"(client {m['elasticsearch_client']}), Redis {m['redis_server']}"
    )
    print(table(rows))
    generation = (
        f"cold run: {ctx.data_s:.0f} s of it loading log data (outside the {ctx.profile.budget_s:.0f} s bound)"
        if ctx.data_s
        else "data reused"
    )
    print(f"wall time {wall_s:.0f} s ({generation}; Redis seeding {ctx.seed_s:.1f} s)")
    for note in ctx.notes:
        print(f"note: {note}")
    print(f"written: {', '.join(str(path) for path in results_paths(ctx.profile))}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data, < 60 s with the stack up")
    parser.add_argument("--only", default="", help="comma-separated scenario ids (P1…P7) to run; all by default")
    args = parser.parse_args()
    only = frozenset(part.strip().upper() for part in args.only.split(",") if part.strip())
    if shutil.which("wrk") is None:
        log("wrk not found; installing Debian's package (falls back to the Python client if that fails)")
    sys.exit(asyncio.run(main_async(QUICK if args.quick else FULL, only)))


if __name__ == "__main__":
    main()
