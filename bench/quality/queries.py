"""The benchmark's queries, picked deterministically from the corpus, in classes (each a label in the output).

Each class extracts its candidate terms from every message (`TERM_CLASSES`: dotted names, paths, versions, …),
sorts them, shuffles them with a seeded RNG and keeps the first ones whose word-part truth is neither empty nor
huge (more than `MAX_TRUTH_SHARE` of the corpus). Some classes turn one term into a few queries (its cases).
AND queries and phrases are taken from one line each (so they find at least that line); "with level" reuses
queries of the other classes with a level filter, preferring those whose lines have several levels (so the
filter has something to remove).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from bench.quality.corpus import LEVELS
from bench.quality.truth import CorpusTruth, is_boundary

SEED = 14  # issue #14
MAX_TRUTH_SHARE = 0.30
PER_CLASS = 20
MAX_TERM_CHARS = 200  # a query stays far below the API's 1,024 characters


@dataclass(frozen=True, slots=True)
class Query:
    label: str  # the query's class
    q: str
    levels: tuple[str, ...] = ()


Extractor = Callable[[str], Iterator[str]]
Variants = Callable[[str], list[str]]  # the queries one term gives

ALNUM_RUN = re.compile(r"[^\W_]+")
DOTTED = re.compile(r"(?<![\w.$])[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*){2,}(?![\w$])")
PATH = re.compile(r"(?<![\w.~/@+:-])(?:\.{1,3}|~)?/?[\w.+@-]+(?:/[\w.+@-]+)+/?")
IPV4 = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")
IPV6 = re.compile(r"\[[0-9A-Fa-f:]*:[0-9A-Fa-f:]*\](?::\d{1,5})?")
UUID = re.compile(r"(?<![^\W_])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![^\W_])")
HEX = re.compile(r"(?<![^\W_])(?:0x)?[0-9a-fA-F]{8,}(?![^\W_])")
BASE64_ID = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{20,24}(?![\w-])")
LOWER_RUN = re.compile(r"[a-z]{6}")
CASE_CHANGE = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")  # camelCase, or an upper-case run before a capitalised part
KEY_VALUE = re.compile(r"(?<![\w.])[A-Za-z_][\w.-]*=[^\s,;()\[\]{}\"'<>=]+")
NUMBER_UNIT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[kKMGTP]i?B|[kmgtp]b|[KMGkmg]|ms|us|µs|ns|s|min|h|%)(?![\w])")
HYPHENATED = re.compile(r"(?<![\w.-])[^\W\d_][^\W_]*(?:-[^\W_]+)+(?![\w-])")
VERSION = re.compile(r"(?<![\w.:~+-])(?:\d+:)?\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z]+(?:[.+~][0-9A-Za-z]+)*)*(?![\w]|\.\d)")
NAME_ARCH = re.compile(r"(?<![\w.+-])([a-z0-9][a-z0-9+.-]*):(amd64|i386|arm64|armhf|all)(?![\w-])")
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][A-Za-z0-9-]*(?![\w])")
WIDE_WHITESPACE = re.compile(r"\s{2,}|[^\S ]")  # any whitespace run but a single space


def _has_letter(text: str) -> bool:
    return any(char.isalpha() for char in text)


def words(message: str) -> Iterator[str]:
    """Whole alphanumeric runs of at least 3 characters with a letter."""
    for match in ALNUM_RUN.finditer(message):
        if len(match[0]) >= 3 and _has_letter(match[0]):
            yield match[0]


def dotted_names(message: str) -> Iterator[str]:
    """Names of three or more dotted parts, each starting with a letter (``org.elasticsearch.node.Node``)."""
    yield from (match[0] for match in DOTTED.finditer(message))


def dotted_parts(message: str) -> Iterator[str]:
    for name in dotted_names(message):
        yield from (part for part in name.split(".") if len(part) >= 3)


def dotted_prefixes(message: str) -> Iterator[str]:
    for name in dotted_names(message):
        parts = name.split(".")
        yield from (".".join(parts[:k]) for k in range(2, len(parts)))


def word_parts_of(run: str) -> list[str]:
    """``run`` cut at its word-part boundaries (``G1CollectForAllocation`` → G, 1, Collect, For, Allocation)."""
    cuts = [i for i in range(1, len(run)) if is_boundary(run, i)]
    return [run[start:end] for start, end in zip([0, *cuts], [*cuts, len(run)], strict=True)]


def camel_parts(message: str) -> Iterator[str]:
    """Parts (3+ letters) of alphanumeric runs that change case inside (camelCase, ``HTTPServer``)."""
    for match in ALNUM_RUN.finditer(message):
        run = match[0]
        if not CASE_CHANGE.search(run):
            continue
        parts = word_parts_of(run)
        yield from (part for part in parts if len(part) >= 3 and part.isalpha() and len(parts) > 1)


def paths(message: str) -> Iterator[str]:
    """Whole paths, and the leading directories (two segments or more) of absolute ones."""
    for match in PATH.finditer(message):
        path = match[0].rstrip("./") if not match[0].endswith("...") else match[0]
        if path.count("/") < 1 or not _has_letter(path):
            continue
        yield path
        segments = path.split("/")
        if path.startswith("/"):
            yield from ("/".join(segments[:k]) for k in range(3, len(segments)))


def path_segments(message: str) -> Iterator[str]:
    for path in paths(message):
        yield from (segment for segment in path.split("/") if len(segment) >= 3 and _has_letter(segment))


def addresses(message: str) -> Iterator[str]:
    """IPv4 and bracketed IPv6 addresses, with their port when one follows, and without."""
    for match in (*IPV4.finditer(message), *IPV6.finditer(message)):
        yield match[0]
        if match[0].count(":") and not match[0].endswith("]"):
            yield match[0].rsplit(":", 1)[0]


def ids(message: str) -> Iterator[str]:
    """UUIDs, hex strings (8+ digits, both digits and letters), and base64url ids such as Elasticsearch's."""
    yield from (match[0] for match in UUID.finditer(message))
    for match in HEX.finditer(message):
        digits = match[0].removeprefix("0x")
        if any(c.isdigit() for c in digits) and any(c.isalpha() for c in digits):
            yield match[0]
    for match in BASE64_ID.finditer(message):
        token = match[0]
        # Random ids have both cases and a few digits; CamelCase names (G1CollectForAllocation,
        # CalendarDuration1243Test) have fewer digits or long lower-case runs.
        mixed = any(c.isupper() for c in token) and any(c.islower() for c in token)
        if mixed and sum(c.isdigit() for c in token) > 1 and not LOWER_RUN.search(token):
            yield token


def key_values(message: str) -> Iterator[str]:
    yield from (match[0].rstrip(".") for match in KEY_VALUE.finditer(message))


def numbers_with_units(message: str) -> Iterator[str]:
    yield from (match[0] for match in NUMBER_UNIT.finditer(message))


def hyphenated(message: str) -> Iterator[str]:
    yield from (match[0] for match in HYPHENATED.finditer(message))


def hyphen_parts(message: str) -> Iterator[str]:
    for name in hyphenated(message):
        yield from (part for part in name.split("-") if len(part) >= 2 and _has_letter(part))


def versions(message: str) -> Iterator[str]:
    """Dotted numbers with Debian-style suffixes (``7.0.15-1``, ``1:2.39.5-0+deb12u2``), not IPv4 addresses."""
    for match in VERSION.finditer(message):
        if not IPV4.fullmatch(match[0]):
            yield match[0]


def name_arches(message: str) -> Iterator[str]:
    yield from (match[0] for match in NAME_ARCH.finditer(message))


def arch_names(message: str) -> Iterator[str]:
    yield from (match[1] for match in NAME_ARCH.finditer(message))


def flags(message: str) -> Iterator[str]:
    yield from (match[0] for match in FLAG.finditer(message))


def copied_tokens(message: str) -> Iterator[str]:
    """Whitespace-separated tokens with punctuation around or inside, as copied from a log (``[gc,start]``,
    ``(252.38-1~deb12u1)``, ``{127.0.0.1:9300},``)."""
    for token in message.split():
        if len(token) <= 60 and not token.isalnum() and any(char.isalnum() for char in token):
            yield token


def as_is(term: str) -> list[str]:
    return [term]


def three_cases(term: str) -> list[str]:
    return list(dict.fromkeys((term.lower(), term.upper(), term)))


def as_is_and_lower(term: str) -> list[str]:
    return list(dict.fromkeys((term, term.lower())))


def as_is_and_upper(term: str) -> list[str]:
    return list(dict.fromkeys((term, term.upper())))


@dataclass(frozen=True, slots=True)
class TermClass:
    label: str
    extract: Extractor
    terms: int  # how many terms (each gives its variants)
    variants: Variants = as_is


TERM_CLASSES = (
    TermClass("word, any case", words, 10, three_cases),
    TermClass("dotted name", dotted_names, PER_CLASS),
    TermClass("dotted part", dotted_parts, PER_CLASS),
    TermClass("camelCase part", camel_parts, 12, as_is_and_lower),
    TermClass("dotted prefix", dotted_prefixes, PER_CLASS),
    TermClass("path", paths, PER_CLASS),
    TermClass("path segment", path_segments, PER_CLASS),
    TermClass("ip, ip:port", addresses, PER_CLASS),
    TermClass("id (hex, uuid, base64)", ids, PER_CLASS),
    TermClass("key=value", key_values, PER_CLASS),
    TermClass("number+unit", numbers_with_units, PER_CLASS),
    TermClass("hyphenated name", hyphenated, PER_CLASS),
    TermClass("hyphen part, any case", hyphen_parts, 10, as_is_and_upper),
    TermClass("version", versions, PER_CLASS),
    TermClass("name:arch", name_arches, PER_CLASS),
    TermClass("name of name:arch", arch_names, PER_CLASS),
    TermClass("flag (-x, --xy)", flags, PER_CLASS),
    TermClass("token as copied", copied_tokens, PER_CLASS),
)
AND_EXTRACTORS = (words, dotted_names, paths, versions, name_arches, key_values, numbers_with_units, hyphenated)


def _usable(term: str) -> bool:
    """A term that is one query word as it stands: no whitespace, no quote, a letter or digit; not too long."""
    plain = not any(char.isspace() or char == '"' for char in term)
    return plain and len(term) <= MAX_TERM_CHARS and any(char.isalnum() for char in term)


class Picker:
    """Picks queries from one corpus; every choice is drawn from an RNG seeded by `SEED` and the class label."""

    def __init__(self, truth: CorpusTruth) -> None:
        self.truth = truth
        self.max_lines = int(MAX_TRUTH_SHARE * len(truth.messages))

    def rng(self, label: str) -> random.Random:
        return random.Random(f"{SEED}:{label}")

    def fits(self, q: str, levels: tuple[str, ...] = ()) -> bool:
        return 0 < len(self.truth.word_parts(q, levels)) <= self.max_lines

    def terms(self, term_class: TermClass) -> list[Query]:
        candidates = sorted({term for message in self.truth.messages for term in term_class.extract(message)})
        rng = self.rng(term_class.label)
        rng.shuffle(candidates)
        queries: list[Query] = []
        taken = 0
        for term in candidates:
            if taken == term_class.terms:
                break
            if _usable(term) and self.fits(term):
                queries += [Query(term_class.label, q) for q in term_class.variants(term)]
                taken += 1
        return queries

    def _line_queries(
        self, label: str, build: Callable[[str, random.Random], str | None], pools: Sequence[Sequence[str]] = ()
    ) -> list[Query]:
        """``PER_CLASS`` queries each built from one line drawn at random (lines that give none are skipped), from
        each of ``pools`` (all messages by default) in turn."""
        rng = self.rng(label)
        pools = pools or [self.truth.messages]
        queries: dict[str, Query] = {}
        for attempt in range(50 * PER_CLASS):
            if len(queries) == PER_CLASS:
                break
            q = build(rng.choice(pools[attempt % len(pools)]), rng)
            if q is not None and q not in queries and self.fits(q):
                queries[q] = Query(label, q)
        return list(queries.values())

    def and_queries(self) -> list[Query]:
        def build(message: str, rng: random.Random) -> str | None:
            terms = sorted({t for extract in AND_EXTRACTORS for t in extract(message) if _usable(t)})
            distinct = list({term.lower(): term for term in terms}.values())
            if len(distinct) < 2:
                return None
            return " ".join(rng.sample(distinct, min(len(distinct), rng.choice((2, 3)))))

        return self._line_queries("AND (2-3 terms)", build)

    def phrases(self) -> list[Query]:
        """2-4 consecutive whitespace-separated tokens of a line, joined by one space; every other one from a line
        with a longer whitespace run (tab, newline, several spaces), straddling it."""

        def build(message: str, rng: random.Random) -> str | None:
            tokens = message.split()
            if len(tokens) < 3:
                return None
            size = rng.randint(2, min(4, len(tokens)))
            starts = range(len(tokens) - size + 1)
            gaps = [match.start() for match in WIDE_WHITESPACE.finditer(message.strip())]
            if gaps:  # windows that include the token pair around one of the wide gaps
                gap_token = len(message.strip()[: rng.choice(gaps)].split())  # tokens before the gap
                starts = range(max(0, gap_token - size + 1), min(gap_token - 1, len(tokens) - size) + 1)
                if not starts:
                    return None
            phrase = " ".join(tokens[(start := rng.choice(starts)) : start + size])
            if '"' in phrase or len(phrase) > MAX_TERM_CHARS or not any(c.isalnum() for c in phrase):
                return None
            return f'"{phrase}"'

        wide = [message for message in self.truth.messages if WIDE_WHITESPACE.search(message.strip())]
        return self._line_queries("phrase", build, [self.truth.messages, wide])

    def with_levels(self, pool: Iterable[Query]) -> list[Query]:
        """Queries of the other classes with a level filter: a level of one of the lines they find (at times
        with a second level), those finding lines of several levels first."""
        label = "with level"
        rng = self.rng(label)
        chosen = sorted(pool, key=lambda query: (query.label, query.q))
        rng.shuffle(chosen)
        chosen.sort(key=lambda query: len({self.truth.levels[i] for i in self.truth.word_parts(query.q)}) < 2)
        queries = []
        for query in chosen[:PER_CLASS]:
            found = sorted({self.truth.levels[i] for i in self.truth.word_parts(query.q)})
            levels = [rng.choice(found)]
            if rng.random() < 0.3:
                levels.append(rng.choice(LEVELS))
            queries.append(Query(label, query.q, tuple(dict.fromkeys(levels))))
        return queries


def pick_queries(truth: CorpusTruth) -> list[Query]:
    """Every class's queries, in class order."""
    picker = Picker(truth)
    queries = [query for term_class in TERM_CLASSES for query in picker.terms(term_class)]
    queries += picker.and_queries() + picker.phrases()
    return queries + picker.with_levels(queries)
