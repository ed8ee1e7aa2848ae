"""Tailing under concurrent writers: every acknowledged line exactly once, ascending, never skipped.

Four writers spread over two app instances append ≥ 20,000 lines in random batch sizes to one job while five
tailers follow ``after = newestSeq`` (three unfiltered, two with level filters). A tailer that ever got past a
seq still being written would miss it forever, and the final comparison would show the gap.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import AppFactory, Tenant, create_job
from tests.logs_helpers import append, page

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
TOTAL_LINES = 20_000
WRITERS = 4


async def test_tailers_see_every_acknowledged_line_once_in_order(
    make_client: AppFactory, tenant: Tenant, admin: dict[str, str]
) -> None:
    instances = [await make_client(), await make_client()]
    job = await create_job(instances[0], tenant, admin)
    acknowledged: dict[int, str] = {}  # seq → level
    writers_done = asyncio.Event()
    rng = random.Random(20261128)

    async def writer(number: int) -> None:
        client = instances[number % len(instances)]
        while len(acknowledged) < TOTAL_LINES:
            levels = [rng.choice(LEVELS) for _ in range(rng.randint(1, 700))]
            lines = [{"message": f"writer {number} line {i}", "level": lvl} for i, lvl in enumerate(levels)]
            answer = await append(client, job["id"], admin, lines)
            assert answer["accepted"] == len(lines)
            assert answer["lastSeq"] - answer["firstSeq"] + 1 == len(lines)
            for offset, level in enumerate(levels):
                acknowledged[answer["firstSeq"] + offset] = level

    async def tailer(client: TestClient[Any, Any], levels: tuple[str, ...], limit: int) -> list[int]:
        seen: list[int] = []
        after = 0
        drained_after_writers = False
        while True:
            finished = writers_done.is_set()
            params: dict[str, Any] = {"after": after, "limit": limit}
            if levels:
                params["level"] = ",".join(levels)
            result = await page(client, job["id"], admin, **params)
            if levels:
                assert {line["level"] for line in result["logs"]} <= set(levels)
            seen.extend(line["seq"] for line in result["logs"])
            if result["logs"]:
                after = result["cursor"]["newestSeq"]
            elif finished:
                # Writers were done before this empty page was asked for: nothing more can come.
                drained_after_writers = True
            if drained_after_writers:
                return seen
            if not result["cursor"]["hasMore"]:
                await asyncio.sleep(0.05)

    tail_specs: list[tuple[tuple[str, ...], int]] = [
        ((), 500),
        ((), 200),
        ((), 37),
        (("warn", "error"), 300),
        (("fatal",), 100),
    ]
    tailers = [
        asyncio.create_task(tailer(instances[i % len(instances)], levels, limit))
        for i, (levels, limit) in enumerate(tail_specs)
    ]
    async with asyncio.timeout(100):
        await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        writers_done.set()
        results = await asyncio.gather(*tailers)

    expected_all = sorted(acknowledged)
    assert len(expected_all) >= TOTAL_LINES
    assert expected_all == list(range(1, len(expected_all) + 1)), "no write failed, so seqs have no gaps"
    for (levels, _), seen in zip(tail_specs, results, strict=True):
        expected = [seq for seq in expected_all if not levels or acknowledged[seq] in levels]
        assert len(seen) == len(expected), f"tailer {levels or 'all'} saw {len(seen)} of {len(expected)} lines"
        assert seen == expected
