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
