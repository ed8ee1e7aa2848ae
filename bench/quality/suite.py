"""The corpus, its truths and its queries together, and the JSON document of a measurement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.quality.corpus import CORPUS_PATH, CorpusLine, load_corpus
from bench.quality.measure import Measurement
from bench.quality.queries import MAX_TRUTH_SHARE, SEED, Query, pick_queries
from bench.quality.score import class_scores, outcome_json
from bench.quality.truth import CorpusTruth


@dataclass(frozen=True, slots=True)
class Suite:
    lines: list[CorpusLine]
    truth: CorpusTruth
    queries: list[Query]

    @property
    def messages(self) -> list[str]:
        return self.truth.messages


def load_suite(path: Path = CORPUS_PATH) -> Suite:
    lines = load_corpus(path)
    truth = CorpusTruth([line.message for line in lines], [line.level for line in lines])
    return Suite(lines, truth, pick_queries(truth))


def document(suite: Suite, measurement: Measurement) -> dict[str, Any]:
    """Everything measured: the per-class scores, and every query with the corpus lines it missed or added."""
    return {
        "corpus": {"lines": len(suite.lines), "sources": sorted({line.source for line in suite.lines})},
        "queries": {"count": len(suite.queries), "seed": SEED, "max_truth_share": MAX_TRUTH_SHARE},
        "where": measurement.where,
        "load_s": round(measurement.load_s, 2),
        "search_s": round(measurement.search_s, 2),
        "classes": {score.label: score.as_json() for score in class_scores(measurement.outcomes)},
        "per_query": [outcome_json(outcome) for outcome in measurement.outcomes],
    }
