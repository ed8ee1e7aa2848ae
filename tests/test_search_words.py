"""What a query word matches, decided without Elasticsearch: word-part boundaries, index fields, highlights."""

from __future__ import annotations

import pytest

from service.domain.search import WordMatcher, camel_parts, is_boundary, parse_words, search_fields


def matches(q: str, message: str) -> bool:
    return WordMatcher(parse_words(q)).matches(message)


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("AllocationService", "o.e.c.r.a.AllocationService reroute"),
        ("allocationservice", "o.e.c.r.a.AllocationService reroute"),
        ("Collect", "G1CollectForAllocation took 3ms"),
        ("collectfor", "G1CollectForAllocation took 3ms"),
        ("zstd", "unpacking zstd_1.5.4+dfsg2-5 and zstd:amd64"),
        ("APT", "configuring python3-apt"),
        ("dpkg", "/var/lib/dpkg/status"),
        ("Server", "HTTPServer started"),
        ("HTTP", "HTTPServer started"),
        ("-v", "run -v now"),
        ("key=value", "set key=value here"),
        ('"bound to"', "publish_address, bound to\t [127.0.0.1]"),
        ("3ms", "G1CollectForAllocation took 3ms"),
        ("10.0.0.1:9200", "connect 10.0.0.1:9200 refused"),
    ],
)
def test_word_parts_match(q: str, message: str) -> None:
    assert matches(q, message)


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("ollect", "G1CollectForAllocation"),
        ("loc", "o.e.c.r.a.AllocationService"),
        ("key=value", "mykey=value"),
        ("key=value", "key = value"),
        ("a.b", "a . b"),
        ("zstd rust", "zstd only"),  # every word must match
        ('"bound to"', "boundto"),
    ],
)
def test_other_text_does_not_match(q: str, message: str) -> None:
    assert not matches(q, message)


def test_boundaries_follow_the_message_case() -> None:
    assert camel_parts("CollectForAllocation") == ["Collect", "For", "Allocation"]
    assert camel_parts("HTTPServer") == ["HTTP", "Server"]
    assert [index for index in range(8) if is_boundary("G1Collect", index)] == [0, 1, 2]


def test_index_fields_hold_case_independent_tokens_and_camel_joins() -> None:
    fields = search_fields("o.e.AllocationService: G1CollectFor 3ms")
    assert fields.words == "o . e . allocationservice : g 1 collectfor 3 ms"
    assert fields.joins is not None
    assert set(fields.joins.split()) == {"allocation", "service", "collect", "for"}
    assert search_fields("plain words only").joins is None


def test_highlights_cover_every_match_in_characters() -> None:
    matcher = WordMatcher(parse_words("zstd amd64"))
    message = "é zstd_1.5 zstd:amd64"
    assert matcher.highlights(message) == [[2, 6], [11, 15], [16, 21]]
    assert [message[start:end] for start, end in matcher.highlights(message)] == ["zstd", "zstd", "amd64"]


def test_quotes_make_phrases_and_symbol_only_words_are_kept() -> None:
    assert [word.text for word in parse_words('"bound  to" x=1 "')] == ["bound to", "x=1"]


def test_one_token_words_need_no_second_check() -> None:
    assert WordMatcher(parse_words("zstd 15ms")).candidates_exact is False  # "15ms" is two tokens
    assert WordMatcher(parse_words("zstd amd")).candidates_exact is True
    assert WordMatcher(parse_words("zstd amd")).verifies("anything: the index decided")


def test_terminal_colours_are_not_part_of_words() -> None:
    message = "\x1b[31mimg\x1b[0m in red, \x1b[1;32mOK\x1b[0m"
    assert matches("img", message)
    assert matches('"img in red"', message)
    assert not matches("31mimg", message)
    assert WordMatcher(parse_words("img ok")).highlights(message) == [[5, 8], [28, 30]]
    assert search_fields(message).words == "img in red , ok"


def test_a_token_longer_than_the_analyzer_keeps_is_indexed_and_asked_for_as_one_digest() -> None:
    """The whitespace analyzer would cut a token over 255 characters into pieces: a query for a piece would find
    it (and be trusted, one token) and a query for the whole would not."""
    long_run, short_run = "a" * 300, "a" * 255
    words = search_fields(f"x {long_run} y").words.split()
    [word] = parse_words(long_run)
    assert words == ["x", word.tokens[0], "y"]
    assert word.tokens[0].startswith("#") and len(word.tokens[0]) <= 255
    assert parse_words(short_run)[0].tokens == (short_run,)  # not in the index: the line's run is longer
    assert search_fields(f"x {short_run} y").words.split() == ["x", short_run, "y"]
    camel = "Aaaa" + "B" + "b" * 299 + "Cccc"  # a join longer than 255 characters is a digest as well
    joins = (search_fields(camel).joins or "").split()
    assert [join for join in joins if len(join) > 255] == []
    assert parse_words("B" + "b" * 299 + "Cccc")[0].tokens[0] in joins


def test_a_long_camel_case_word_is_also_looked_for_by_its_three_part_runs() -> None:
    """Beyond 8 parts a line's `joins` holds runs of up to 3 parts only: a longer word inside such a run is a
    candidate where all its 3-part runs are, and checked exactly (it is no longer a one-token certainty)."""
    [word] = parse_words("TwoThreeFourFive")
    assert word.join_windows == ("twothreefour", "threefourfive")
    assert not WordMatcher((word,)).candidates_exact
    assert parse_words("TwoThreeFour")[0].join_windows == ()
    assert parse_words("twothreefourfive")[0].join_windows == ()  # no case, no parts to know
    assert parse_words("Two.ThreeFourFive")[0].join_windows == ()  # not one letter run
    joins = set((search_fields("x OneTwoThreeFourFiveSixSevenEightNineTen y").joins or "").split())
    assert set(word.join_windows) <= joins and "twothreefourfive" not in joins
