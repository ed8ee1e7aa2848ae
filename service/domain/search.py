"""What a log search means, and the index fields that let Elasticsearch find it (pure: no I/O).

A query word matches a line when it occurs in the message, case-insensitively, starting and ending at **word-part
boundaries**: the ends of the message, either side of a character that is not a letter or digit, a letter↔digit
transition, and a camelCase transition (``Collect`` in ``G1CollectForAllocation``, ``HTTP|Server``). That is what a
person means by "this word appears" in a log: ``AllocationService`` in ``o.e.c.r.a.AllocationService``, ``zstd`` in
``zstd:amd64``, ``dpkg`` in ``/var/lib/dpkg/status``, but not ``ollect`` nor ``loc``.

Elasticsearch finds candidates with two fields the service fills at ingest (no analysis module needed: the
built-in ``whitespace`` analyzer splits what we joined with spaces):

- ``words``, positional: the message lower-cased and cut at every case-independent boundary — runs of letters,
  runs of digits, and each other non-space character as a token of its own. A query word cut the same way is a
  phrase there whenever both its ends fall on such boundaries.
- ``joins``, a set: every proper run of camelCase parts of a mixed-case letter run (``collect``, ``collectfor``,
  ``forallocation`` … of ``CollectForAllocation``), for query words whose ends fall inside a letter run.

Candidates are then verified here, exactly, by `WordMatcher` (which also yields the highlights): what a read
returns is decided by this module, never by how an analyzer happened to cut a line.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Tokens of the ``words`` field, found in the lower-cased message: letter runs, digit runs, or one other
# non-space character ("_" is a word character to ``re`` and a separator to us, hence its own branch).
WORD_TOKEN = re.compile(r"[^\W\d_]+|\d+|_|[^\w\s]")
LETTER_RUN = re.compile(r"[^\W\d_]+")
# A letter run of more camelCase parts than this indexes only its ranges of up to MAX_JOIN_PARTS parts: mixed-case
# noise (base64, random ids) must not multiply the index. Real identifiers stay far below it.
MAX_CAMEL_PARTS_INDEXED_WHOLLY = 8
# Where an ASCII text has a camelCase transition (`_camel_boundary`): lower→Upper, or UPPER-UPPER-lower.
ASCII_CAMEL_TRANSITION = re.compile(r"[a-z][A-Z]|[A-Z][A-Z][a-z]")
MAX_JOIN_PARTS = 3
# The whitespace analyzer cuts a token longer than this (its max_token_length) into pieces, which would match
# queries for pieces of it and miss a query for all of it: such a token is indexed (and queried) as its digest.
MAX_INDEXED_TOKEN_CHARS = 255
LONG_WORD_PREFIX = "#"  # no token of ours is a punctuation mark followed by more characters: a digest is never a word


@dataclass(frozen=True, slots=True)
class SearchFields:
    words: str
    joins: str | None  # None when the message has no mixed-case letter run


# Terminal escape sequences (colours: ``ESC[31m``) are formatting, not text: they are searched as spaces, so
# ``img`` is found in ``ESC[31mimg ESC[0m`` as a person sees it on screen, and offsets stay those of the message.
ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def searchable(message: str) -> str:
    """The message as search sees it: the same length, its escape sequences blanked."""
    if "\x1b" not in message:
        return message
    return ESCAPE_SEQUENCE.sub(lambda found: " " * len(found.group()), message)


def search_fields(message: str) -> SearchFields:
    """The ``words`` and ``joins`` values of a message (see the module docstring)."""
    text = searchable(message)
    tokens = WORD_TOKEN.findall(_lower(text))
    if len(text) > MAX_INDEXED_TOKEN_CHARS:  # only a message this long may hold a token this long
        tokens = [index_token(token) for token in tokens]
    return SearchFields(" ".join(tokens), _joins(text))


def index_token(token: str) -> str:
    """``token`` as the index holds it: itself, or a digest when it is longer than the analyzer keeps whole."""
    if len(token) <= MAX_INDEXED_TOKEN_CHARS:
        return token
    return LONG_WORD_PREFIX + hashlib.blake2b(token.encode(), digest_size=16).hexdigest()


def _lower(text: str) -> str:
    # Offsets must survive lower-casing (a few characters, such as "İ", lower-case to two): keep those as they are.
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch if len(low := ch.lower()) != 1 else low for ch in text)


def _joins(message: str) -> str | None:
    if message.isascii() and ASCII_CAMEL_TRANSITION.search(message) is None:
        return None  # the common case, decided by one regex search in C: no camelCase anywhere
    tokens: dict[str, None] = {}
    for run in LETTER_RUN.findall(message):
        if run.isupper() or run[1:].islower():  # FOO, Foo, foo: one part, nothing to join
            continue
        parts = camel_parts(run)
        count = len(parts)
        if count < 2:
            continue
        longest = count if count <= MAX_CAMEL_PARTS_INDEXED_WHOLLY else MAX_JOIN_PARTS
        for start in range(count):
            for end in range(start + 1, min(count, start + longest) + 1):
                if end - start < count:  # the whole run is a token of ``words`` already
                    tokens[index_token("".join(parts[start:end]).lower())] = None
    return " ".join(tokens) if tokens else None


def camel_parts(run: str) -> list[str]:
    """A letter run cut at its camelCase transitions: ``G``… no digits here; ``CollectForAllocation`` →
    Collect, For, Allocation; ``HTTPServer`` → HTTP, Server."""
    parts: list[str] = []
    start = 0
    for index in range(1, len(run)):
        if _camel_boundary(run[index - 1], run[index], run[index + 1] if index + 1 < len(run) else ""):
            parts.append(run[start:index])
            start = index
    parts.append(run[start:])
    return parts


def _camel_boundary(before: str, after: str, next_char: str) -> bool:
    if before.islower() and after.isupper():
        return True
    return before.isupper() and after.isupper() and next_char.islower()


def is_boundary(text: str, index: int) -> bool:
    """Whether a word part may start or end at ``index`` of ``text`` (between ``text[index-1]`` and ``text[index]``)."""
    if index <= 0 or index >= len(text):
        return True
    before, after = text[index - 1], text[index]
    if not (before.isalnum() and after.isalnum()):
        return True
    if before.isalpha() != after.isalpha():
        return True
    return _camel_boundary(before, after, text[index + 1] if index + 1 < len(text) else "")


# --- queries -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryWord:
    """One word of ``q`` (or one quoted phrase): its text, its ``words`` tokens (as the index holds them), and,
    for a single letter run of more than `MAX_JOIN_PARTS` camelCase parts, its runs of `MAX_JOIN_PARTS` parts
    (``joins`` of a line's run of more than `MAX_CAMEL_PARTS_INDEXED_WHOLLY` parts holds only those: a word
    inside such a run is found where all of them are, and `WordMatcher` decides)."""

    text: str
    tokens: tuple[str, ...]
    join_windows: tuple[str, ...] = ()

    @property
    def edges_may_split(self) -> bool:
        """Whether an end of this word may fall inside a letter run of a line (a camelCase part), where the
        ``words`` phrase cannot see it."""
        return self.tokens[0].isalpha() or self.tokens[-1].isalpha()


QUERY_PART = re.compile(r'"([^"]*)"|(\S+)')


@functools.lru_cache(maxsize=1024)  # a read asks for its words several times (query, batches, matcher)
def parse_words(q: str) -> tuple[QueryWord, ...]:
    """``q`` as the contract reads it: whitespace-separated words, all of which must match; ``"a phrase"`` is
    one word whose spaces match any run of whitespace. A word without a letter or digit searches for its
    characters as they are; an empty phrase or a lone quote is ignored."""
    words: dict[str, QueryWord] = {}
    for phrase, word in QUERY_PART.findall(q):
        text = " ".join(phrase.split()) if phrase else word.replace('"', "")
        tokens = tuple(index_token(token) for token in WORD_TOKEN.findall(_lower(text)))
        if tokens:
            words.setdefault(text.lower(), QueryWord(text, tokens, _join_windows(text)))
    return tuple(words.values())


def _join_windows(text: str) -> tuple[str, ...]:
    """The runs of `MAX_JOIN_PARTS` camelCase parts of ``text`` when it is one letter run of more parts."""
    if LETTER_RUN.fullmatch(text) is None:
        return ()
    parts = camel_parts(text)
    if len(parts) <= MAX_JOIN_PARTS:
        return ()
    windows = ("".join(parts[start : start + MAX_JOIN_PARTS]).lower() for start in range(len(parts) - 2))
    return tuple(dict.fromkeys(index_token(window) for window in windows))


class WordMatcher:
    """The exact test of a line against the words of a query, and where each word matched."""

    def __init__(self, words: tuple[QueryWord, ...]) -> None:
        self.words = words
        # A phrase's spaces match any run of whitespace; everything else matches itself, in any case.
        self._patterns = [
            re.compile(r"\s+".join(re.escape(part) for part in word.text.split(" ")), re.IGNORECASE) for word in words
        ]

    @property
    def candidates_exact(self) -> bool:
        """Whether Elasticsearch's candidates are exactly the matches, so checking them again is wasted: every word
        is one token (a `term` on ``words`` or ``joins`` — or, in an index made before those fields, on a
        standard token, whose ends are word-part boundaries too) and none is also looked for by its camelCase
        windows (which may all occur without the word)."""
        return all(len(word.tokens) == 1 and not word.join_windows for word in self.words)

    def verifies(self, message: str) -> bool:
        """`matches`, unless the candidates are known to match already."""
        return self.candidates_exact or self.matches(message)

    def matches(self, message: str) -> bool:
        text = searchable(message)
        return all(next(self._occurrences(pattern, text), None) is not None for pattern in self._patterns)

    def highlights(self, message: str) -> list[list[int]]:
        """``[[start, end], …]``: every match of every word, in characters of ``message``, sorted and merged."""
        text = searchable(message)
        spans = sorted(span for pattern in self._patterns for span in self._occurrences(pattern, text))
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged

    @staticmethod
    def _occurrences(pattern: re.Pattern[str], message: str) -> Iterator[tuple[int, int]]:
        # Overlapping occurrences count (searching "aa" in "aaa" at 0 and 1): resume one character after a start.
        position = 0
        while (found := pattern.search(message, position)) is not None:
            start, end = found.span()
            if is_boundary(message, start) and is_boundary(message, end):
                yield start, end
            position = start + 1


@functools.lru_cache(maxsize=1024)  # a matcher holds only its words' compiled patterns: one per query text will do
def matcher_for(words: tuple[QueryWord, ...]) -> WordMatcher | None:
    """The exact test of ``q`` (None for no ``q``)."""
    return WordMatcher(words) if words else None
