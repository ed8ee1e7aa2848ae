"""The ground truths of the search-quality benchmark (bench/quality/truth.py): pure functions, no stack needed."""

from __future__ import annotations

import pytest

from bench.quality.truth import (
    CorpusTruth,
    grep_match,
    is_boundary,
    line_matches,
    parse_query,
    word_part_match,
)

ES_LINE = "[org.elasticsearch.cluster.routing.allocation.AllocationService] [joblens-local-1] started"


def boundaries(text: str) -> list[int]:
    return [i for i in range(len(text) + 1) if is_boundary(text, i)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [0]),
        ("abc", [0, 3]),
        ("a-b", [0, 1, 2, 3]),  # alphanumeric ↔ not, either order
        ("a--b", [0, 1, 2, 3, 4]),  # between two non-alphanumerics
        ("G1CollectForAllocation", [0, 1, 2, 9, 12, 22]),  # letter ↔ digit, lower → Upper
        ("HTTPServer", [0, 4, 10]),  # before the last capital of an upper-case run followed by lower case
        ("HTTP", [0, 4]),  # an upper-case run alone is one part
        ("Server", [0, 6]),  # Upper → lower is no boundary
        ("deb12u1", [0, 3, 5, 6, 7]),
        ("ÉtéCafé", [0, 3, 7]),  # letters beyond ASCII follow the same rules
    ],
)
def test_boundaries(text: str, expected: list[int]) -> None:
    assert boundaries(text) == expected


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("Collect", "[gc] Pause Young (G1CollectForAllocation) 24M->8M"),
        ("collect", "[gc] Pause Young (G1CollectForAllocation) 24M->8M"),  # the query's case does not matter
        ("COLLECTFOR", "G1CollectForAllocation"),
        ("G1", "G1CollectForAllocation"),
        ("AllocationService", ES_LINE),
        ("org.elasticsearch.cluster", ES_LINE),
        ("org.elasticsearch.cluster.routing.allocation.AllocationService", ES_LINE),
        ("allocation", ES_LINE),
        ("/var/lib/dpkg", "unpacking to /var/lib/dpkg/info/zstd.list"),
        ("dpkg", "unpacking to /var/lib/dpkg/info/zstd.list"),
        ("zstd:amd64", "status installed zstd:amd64 1.5.4+dfsg2-5"),
        ("zstd", "status installed zstd:amd64 1.5.4+dfsg2-5"),
        ("1.5.4", "status installed zstd:amd64 1.5.4+dfsg2-5"),
        ("7.0.15-1", "Unpacking redis-tools (5:7.0.15-1~deb12u1) ..."),
        ("python3-apt", "Setting up python3-apt (2.6.0) ..."),
        ("APT", "Setting up python3-apt (2.6.0) ..."),
        ("512mb", "heap size [512mb], compressed ordinary object pointers [true]"),
        ("512", "heap size [512mb]"),  # digits → letters is a boundary
        ("mb", "heap size [512mb]"),
        ("10s", "timeout=10s"),
        ("timeout=10s", "request timeout=10s reached"),
        ("127.0.0.1:9300", "publish_address {127.0.0.1:9300}"),
        ("127.0.0.1", "publish_address {127.0.0.1:9300}"),
        ("-v", "run with -v --quiet"),  # a non-alphanumeric edge is always on a boundary on its side
        ("--quiet", "run with -v --quiet"),
        ("Server", "HTTPServer started"),
        ("HTTP", "HTTPServer started"),
        ("9170df19cae1", "build[zip/9170df19cae1]"),
        ("a b", "xx a  \t b yy"),  # a phrase's whitespace matches any whitespace run
        ("Setting up", "Setting\nup python3-apt"),
    ],
)
def test_word_part_matches(word: str, message: str) -> None:
    assert word_part_match(word, message)
    assert grep_match(word, message)


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("ollect", "G1CollectForAllocation"),  # starts inside a part
        ("Coll", "G1CollectForAllocation"),  # ends inside a part
        ("TPS", "HTTPServer"),  # inside the upper-case run
        ("Serv", "HTTPServer"),
        ("collect", "g1collectforallocation"),  # boundaries come from the message's case: none here
        ("v", "ls -vx"),
        ("dpkg", "dpkgs are here"),
        ("ab", "xab"),
        ("a b", "xa by"),  # a phrase's ends must sit on boundaries too
        ("15-1", "7.0.15-12"),
    ],
)
def test_grep_matches_where_word_parts_do_not(word: str, message: str) -> None:
    assert not word_part_match(word, message)
    assert grep_match(word, message)


def test_word_part_match_tries_every_occurrence() -> None:
    # the first "apt" is inside "aptitude"; the second one is a whole part: overlapping and later hits count
    assert word_part_match("apt", "aptitude and apt")
    assert word_part_match("aa", "aaa-aa")
    assert not word_part_match("aa", "aaa")


def test_neither_matches() -> None:
    assert not word_part_match("zstd", "status installed libzst:amd64")
    assert not grep_match("zstd", "status installed libzst:amd64")
    assert not grep_match("a b", "a-b")  # a phrase's space needs whitespace


def test_grep_is_a_case_insensitive_substring() -> None:
    assert grep_match("ELASTIC", "org.elasticsearch.node.Node")
    assert grep_match("lastic", "org.elasticsearch.node.Node")
    assert not grep_match("elastic search", "org.elasticsearch.node.Node")


@pytest.mark.parametrize(
    ("q", "words"),
    [
        ("zstd amd64", ("zstd", "amd64")),
        ("  zstd\tamd64\n", ("zstd", "amd64")),
        ('"Setting   up" python3-apt', ("Setting up", "python3-apt")),  # a phrase is one word, spaces collapsed
        ('"  padded  "', ("padded",)),
        ('-- "" zstd', ("zstd",)),  # words without a letter or digit filter nothing
        ('ab"cd', ("ab", "cd")),  # a stray quote separates words
        ('"unclosed phrase', ("unclosed", "phrase")),
        ("", ()),
    ],
)
def test_parse_query(q: str, words: tuple[str, ...]) -> None:
    assert parse_query(q) == words


def test_line_matches_needs_every_word_in_any_order_and_the_level() -> None:
    message = "Setting up python3-apt (2.6.0) ..."
    words = parse_query('apt "setting up" 2.6.0')
    assert line_matches(words, (), message, "info", word_part_match)
    assert line_matches(words, ("warn", "info"), message, "info", word_part_match)
    assert not line_matches(words, ("warn",), message, "info", word_part_match)
    assert not line_matches(parse_query("apt zstd"), (), message, "info", word_part_match)
    assert line_matches((), ("info",), message, "info", word_part_match)  # no words: the level alone decides


def test_corpus_truth() -> None:
    messages = [
        "status installed zstd:amd64 1.5.4+dfsg2-5",
        "status installed libzstd1:amd64 1.5.4+dfsg2-5",
        "[gc] Pause Young (G1CollectForAllocation) 24M->8M(512M) 3.456ms",
        "WARNING: Unknown module: org.apache.arrow.memory.core",
    ]
    truth = CorpusTruth(messages, ["info", "info", "debug", "warn"])
    assert truth.word_parts("zstd") == {0}
    assert truth.grep("zstd") == {0, 1}
    assert truth.word_parts("amd64 1.5.4") == {0, 1}
    assert truth.word_parts("amd64 1.5.4", ("debug",)) == frozenset()
    assert truth.word_parts("collect 512M", ("debug", "warn")) == {2}
    assert truth.word_parts('"unknown module:"') == {3}
    assert truth.grep("rrow") == {3}
    assert truth.word_parts("rrow") == frozenset()
    assert truth.word_parts("", ("warn",)) == {3}
