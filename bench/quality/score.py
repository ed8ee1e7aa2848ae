"""Scores of the service's answers against both truths: per query, per class and in total, and their printouts.

Per query: recall and precision against the word-part truth, recall against the grep truth. A query that finds
nothing has precision 1 (it returned no wrong line; its recall says what it missed). A class's figures are the
means over its queries (each query weighs the same), as are the totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.quality.queries import Query

TOTAL = "all classes"
EXAMPLE_CHARS = 160


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    query: Query
    found: frozenset[int]  # corpus indexes of the lines the service returned
    word_parts: frozenset[int]  # … the word-part truth finds
    grep: frozenset[int]  # … the grep truth finds

    @property
    def recall(self) -> float:
        return len(self.found & self.word_parts) / len(self.word_parts) if self.word_parts else 1.0

    @property
    def precision(self) -> float:
        return len(self.found & self.word_parts) / len(self.found) if self.found else 1.0

    @property
    def grep_recall(self) -> float:
        return len(self.found & self.grep) / len(self.grep) if self.grep else 1.0

    @property
    def missed(self) -> frozenset[int]:
        return self.word_parts - self.found

    @property
    def extra(self) -> frozenset[int]:
        return self.found - self.word_parts


@dataclass(frozen=True, slots=True)
class ClassScore:
    label: str
    queries: int
    recall: float
    precision: float
    grep_recall: float
    exact: int  # queries that found exactly the word-part truth
    empty: int  # queries that found nothing

    def as_json(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "grep_recall": round(self.grep_recall, 4),
            "exact": self.exact,
            "empty": self.empty,
        }


def _score(label: str, outcomes: Sequence[QueryOutcome]) -> ClassScore:
    n = len(outcomes)
    return ClassScore(
        label,
        n,
        sum(o.recall for o in outcomes) / n,
        sum(o.precision for o in outcomes) / n,
        sum(o.grep_recall for o in outcomes) / n,
        sum(o.found == o.word_parts for o in outcomes),
        sum(not o.found for o in outcomes),
    )


def class_scores(outcomes: Sequence[QueryOutcome]) -> list[ClassScore]:
    """One score per class, in the order the classes first appear, then the total (`TOTAL`)."""
    by_class: dict[str, list[QueryOutcome]] = {}
    for outcome in outcomes:
        by_class.setdefault(outcome.query.label, []).append(outcome)
    return [_score(label, group) for label, group in by_class.items()] + [_score(TOTAL, outcomes)]


def score_table(scores: Sequence[ClassScore]) -> str:
    header = ("class", "queries", "recall", "precision", "grep recall", "exact", "empty")
    rows = [
        (s.label, str(s.queries), f"{s.recall:.1%}", f"{s.precision:.1%}", f"{s.grep_recall:.1%}", str(s.exact),
         str(s.empty))
        for s in scores
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = []
    for number, row in enumerate((header, *rows)):
        if number == len(rows):  # the total, set apart
            lines.append("  ".join("-" * width for width in widths))
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def worst(outcomes: Sequence[QueryOutcome], count: int) -> list[QueryOutcome]:
    """The ``count`` queries furthest from the word-part truth (lowest recall, then lowest precision), imperfect
    ones only."""
    imperfect = [o for o in outcomes if o.found != o.word_parts]
    return sorted(imperfect, key=lambda o: (o.recall, o.precision, o.query.label, o.query.q))[:count]


def _example(message: str) -> str:
    text = message if len(message) <= EXAMPLE_CHARS else message[: EXAMPLE_CHARS - 1] + "…"
    return repr(text)


def describe(outcome: QueryOutcome, messages: Sequence[str], examples: int = 2) -> str:
    """One query's figures and a few lines it missed or returned wrongly, for tuning the implementation."""
    query = outcome.query
    levels = f" level={','.join(query.levels)}" if query.levels else ""
    lines = [
        f"[{query.label}] q={query.q!r}{levels}: recall {outcome.recall:.0%}, precision {outcome.precision:.0%}, "
        f"grep recall {outcome.grep_recall:.0%}; found {len(outcome.found)}, word parts {len(outcome.word_parts)}, "
        f"grep {len(outcome.grep)}"
    ]
    lines += [f"    missed: {_example(messages[i])}" for i in sorted(outcome.missed)[:examples]]
    lines += [f"    extra:  {_example(messages[i])}" for i in sorted(outcome.extra)[:examples]]
    return "\n".join(lines)


def outcome_json(outcome: QueryOutcome) -> dict[str, Any]:
    """A query's figures, with the corpus line numbers (0-based) it missed and returned wrongly."""
    return {
        "label": outcome.query.label,
        "q": outcome.query.q,
        "levels": list(outcome.query.levels),
        "found": len(outcome.found),
        "word_parts": len(outcome.word_parts),
        "grep": len(outcome.grep),
        "recall": round(outcome.recall, 4),
        "precision": round(outcome.precision, 4),
        "grep_recall": round(outcome.grep_recall, 4),
        "missed_lines": sorted(outcome.missed),
        "extra_lines": sorted(outcome.extra),
    }
