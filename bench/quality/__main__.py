"""``python -m bench.quality [--verbose [N]]``: how well log search ``q`` finds what people look for.

Starts its own ``joblens serve`` (index prefix `PREFIX`, whose indices are dropped first) against the stack of
JOBLENS_REDIS_URL and JOBLENS_ELASTICSEARCH_URL, loads the corpus into one job of a fresh space, runs every
query and prints recall and precision against the word-part truth and recall against grep, per query class.
``--source DIR`` runs the service from another source tree (say ``git archive <commit> | tar -x -C DIR``), to
compare commits on the same stack. ``--verbose`` adds the N queries furthest from the word-part truth, with
lines they missed or added. The whole result (every query, the corpus lines it missed or added) goes to
``bench/results/quality.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from bench.es import Es
from bench.prepare import log, stack_urls
from bench.procs import start_service, wait_http
from bench.quality.measure import Measurement, measure
from bench.quality.score import class_scores, describe, score_table, worst
from bench.quality.suite import Suite, document, load_suite
from bench.report import RESULTS_DIR

PREFIX = "jlquality"
SERVICE_ENV = {
    "JOBLENS_INDEX_PREFIX": PREFIX,
    "JOBLENS_BACKGROUND_TASKS": "false",
    "JOBLENS_RATE_LIMIT_PER_S": "1000000",
}
RESULT_PATH = RESULTS_DIR / "quality.json"


async def drop_indices(es_url: str) -> None:
    """Start from no ``PREFIX-*`` index (only this tool writes there; the cluster refuses wildcard deletes)."""
    async with Es(es_url) as es:
        indices = await es.call("GET", f"/_cat/indices/{PREFIX}-*", params={"format": "json", "h": "index"})
        for index in indices:
            await es.delete_index(index["index"])


async def run(suite: Suite, source: Path | None) -> Measurement:
    redis_url, es_url = stack_urls()
    await drop_indices(es_url)
    # The `joblens` script finds the `service` package on PYTHONPATH before this checkout's editable install.
    env = SERVICE_ENV | ({"PYTHONPATH": str(source)} if source else {})
    service = start_service("quality", env, RESULTS_DIR)
    try:
        await wait_http(service, "/healthz")
        return await measure(service.base_url, redis_url, suite.lines, suite.truth, suite.queries)
    finally:
        service.stop()


def report(suite: Suite, measurement: Measurement, verbose: int) -> str:
    lines = [
        f"search quality: {len(suite.queries)} queries over {len(suite.lines):,} corpus lines "
        f"(loaded in {measurement.load_s:.1f} s, searched in {measurement.search_s:.1f} s; {measurement.where})",
        score_table(class_scores(measurement.outcomes)),
    ]
    if verbose:
        furthest = worst(measurement.outcomes, verbose)
        lines.append(f"\nthe {len(furthest)} queries furthest from the word-part truth (of {verbose} asked):")
        described = [describe(outcome, suite.messages) for outcome in furthest]
        lines += described or ["none: every query found exactly the lines of its word-part truth"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--verbose", nargs="?", type=int, const=30, default=0, metavar="N",
                        help="also print the N worst queries (30 without N)")  # fmt: skip
    parser.add_argument("--source", type=Path, help="run the service from this source tree instead of this checkout")
    parser.add_argument("--json", type=Path, default=RESULT_PATH, help=f"where to write the result ({RESULT_PATH})")
    args = parser.parse_args()
    suite = load_suite()
    log(f"quality: {len(suite.queries)} queries picked over {len(suite.lines):,} lines")
    measurement = asyncio.run(run(suite, args.source.resolve() if args.source else None))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(document(suite, measurement), option=orjson.OPT_INDENT_2))
    print(report(suite, measurement, args.verbose))
    print(f"written: {args.json}")
    sys.exit(0)


if __name__ == "__main__":
    main()
