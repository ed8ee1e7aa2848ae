"""The ground truths of log search: which lines a query (``q`` plus a level filter) should find. Pure functions.

Query syntax (the contract of ``q``): split on whitespace into words; every word must match (AND, any order); a
``"quoted phrase"`` is one word that contains spaces, matched as a unit, any run of whitespace in it matching any
run of whitespace in the message. Words without a letter or digit are dropped (a ``q`` without letters or digits
filters nothing, says the API); a stray ``"`` separates words.

Two truths for "word W matches message M":

- *grep*: ``W.lower() in M.lower()`` (for a phrase, with every whitespace run of both read as one space);
- *word parts*, what a person means by "this word appears": some case-insensitive occurrence of W in M starts and
  ends at a word-part boundary of M (`is_boundary`), decided on M's characters, not W's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection

WordMatch = Callable[[str, str], bool]  # (word, message) → does the word match the message?

QUERY_WORD = re.compile(r'"([^"]*)"|[^\s"]+')


def parse_query(q: str) -> tuple[str, ...]:
    """The words of ``q``; a phrase is one word, its whitespace runs joined into single spaces."""
    words = []
    for match in QUERY_WORD.finditer(q):
        phrase = match[1]
        word = " ".join(phrase.split()) if phrase is not None else match[0]
        if any(char.isalnum() for char in word):
            words.append(word)
    return tuple(words)


def is_boundary(text: str, i: int) -> bool:
    """Whether position ``i`` (between ``text[i - 1]`` and ``text[i]``) is a word-part boundary: the ends of the
    text; next to a non-alphanumeric character (either side, or both); a letter↔digit change; a camelCase change
    lower→Upper (``t|F`` in ``CollectFor``); inside an upper-case run before its last capital when a lower-case
    letter follows (``HTTP|Server``)."""
    if i <= 0 or i >= len(text):
        return True
    before, after = text[i - 1], text[i]
    if not (before.isalnum() and after.isalnum()):
        return True
    if (before.isalpha() and after.isdigit()) or (before.isdigit() and after.isalpha()):
        return True
    if before.islower() and after.isupper():
        return True
    return before.isupper() and after.isupper() and i + 1 < len(text) and text[i + 1].islower()


@functools.lru_cache(maxsize=4096)
def _occurrences(word: str) -> re.Pattern[str]:
    """Every (overlapping) case-insensitive occurrence of ``word``; a space in it matches any whitespace run."""
    body = r"\s+".join(re.escape(part) for part in word.split())
    return re.compile(f"(?=({body}))", re.IGNORECASE)


def word_part_match(word: str, message: str) -> bool:
    """Some occurrence of ``word`` in ``message`` starts and ends on a word-part boundary."""
    for match in _occurrences(word).finditer(message):
        if is_boundary(message, match.start(1)) and is_boundary(message, match.end(1)):
            return True
    return False


def grep_match(word: str, message: str) -> bool:
    """``word`` is a case-insensitive substring of ``message`` (whitespace runs as single spaces, for phrases)."""
    if " " in word:
        return " ".join(word.lower().split()) in " ".join(message.lower().split())
    return word.lower() in message.lower()


def line_matches(words: tuple[str, ...], levels: Collection[str], message: str, level: str, match: WordMatch) -> bool:
    """Every word matches ``message`` and, when ``levels`` is given, ``level`` is one of them."""
    if levels and level not in levels:
        return False
    return all(match(word, message) for word in words)


class CorpusTruth:
    """Both truths over one corpus (messages and levels), each word's lines computed once."""

    def __init__(self, messages: list[str], levels: list[str]) -> None:
        self.messages = messages
        self.levels = levels
        self._word_part: dict[str, frozenset[int]] = {}
        self._grep: dict[str, frozenset[int]] = {}

    def _word_lines(self, word: str, match: WordMatch, cache: dict[str, frozenset[int]]) -> frozenset[int]:
        if word not in cache:
            cache[word] = frozenset(i for i, message in enumerate(self.messages) if match(word, message))
        return cache[word]

    def _lines(
        self, q: str, levels: Collection[str], match: WordMatch, cache: dict[str, frozenset[int]]
    ) -> frozenset[int]:
        lines = frozenset(range(len(self.messages)))
        for word in parse_query(q):
            lines &= self._word_lines(word, match, cache)
        if levels:
            lines = frozenset(i for i in lines if self.levels[i] in levels)
        return lines

    def word_parts(self, q: str, levels: Collection[str] = ()) -> frozenset[int]:
        """Indexes of the lines ``q`` and ``levels`` find by the word-part truth."""
        return self._lines(q, levels, word_part_match, self._word_part)

    def grep(self, q: str, levels: Collection[str] = ()) -> frozenset[int]:
        """Indexes of the lines ``q`` and ``levels`` find by the grep truth."""
        return self._lines(q, levels, grep_match, self._grep)
