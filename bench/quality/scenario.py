"""Row Q of ``python -m bench.run``: search quality, measured on the run's service (see `bench.quality`).

The rows carry the totals; the per-class table goes to stderr as the run goes and, with the worst queries, into
the run's JSON under ``details.Q``.
"""

from __future__ import annotations

from typing import Any

from bench.prepare import Ctx, log, stack_urls
from bench.quality.measure import measure
from bench.quality.score import class_scores, outcome_json, score_table, worst
from bench.quality.suite import document, load_suite
from bench.report import Row

WORST_KEPT = 20  # queries kept in the run's JSON (``python -m bench.quality`` writes them all)
LINES_KEPT = 20  # missed / extra line numbers kept per query there
EVERY_LINE = "= 100 %"  # the goal of issue #14: q finds exactly the lines where its words appear


async def q_quality(ctx: Ctx) -> tuple[list[Row], dict[str, Any]]:
    suite = load_suite()
    redis_url, _ = stack_urls()
    measurement = await measure(ctx.service.base_url, redis_url, suite.lines, suite.truth, suite.queries)
    scores = class_scores(measurement.outcomes)
    for line in score_table(scores).splitlines():
        log(f"Q  {line}")
    *classes, total = scores
    lowest = min(classes, key=lambda score: score.recall)
    below = lowest.recall < 1.0
    lowest_label, lowest_n = (lowest.label, f"{lowest.queries} queries") if below else ("none below 100 %", "")
    n = f"{total.queries} queries"
    rows = [
        Row("Q", f"search q: recall vs word parts, {len(classes)} query classes", "%", 100 * total.recall,
            target=EVERY_LINE, ok=total.recall == 1.0, samples=n),
        Row("Q", "search q: precision vs word parts", "%", 100 * total.precision, target=EVERY_LINE,
            ok=total.precision == 1.0, samples=n),
        Row("Q", "search q: recall vs grep (substring)", "%", 100 * total.grep_recall, samples=n),
        Row("Q", f"  lowest class recall vs word parts: {lowest_label}", "%", 100 * lowest.recall,
            samples=lowest_n),
    ]  # fmt: skip
    details = {key: value for key, value in document(suite, measurement).items() if key != "per_query"}
    details["worst"] = [_trimmed(outcome_json(outcome)) for outcome in worst(measurement.outcomes, WORST_KEPT)]
    return rows, details


def _trimmed(query: dict[str, Any]) -> dict[str, Any]:
    return query | {key: query[key][:LINES_KEPT] for key in ("missed_lines", "extra_lines")}


def q_estimate(ctx: Ctx) -> float:
    """Picking the queries (~4 s of CPU), loading 5,500 lines and ~400 searches: well under this on 2 cores."""
    return 25.0
