"""Our ULID encoder and wire times (pure functions: no services needed), checked against the spec, python-ulid
and the standard library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from service.domain.clock import (
    MAX_MS,
    MIN_MS,
    is_ulid,
    iso_from_ms,
    ms_from_iso,
    new_id,
    new_ids,
    now_ms,
    ulid_of,
    ulids_of,
)


def test_ulid_of_matches_the_spec_example() -> None:
    # github.com/ulid/spec: 1469918176385 ms encodes as 01ARYZ6S41
    assert ulid_of(1469918176385, 0) == "01ARYZ6S410000000000000000"
    assert ulid_of(1469918176385, (1 << 80) - 1) == "01ARYZ6S41ZZZZZZZZZZZZZZZZ"


def test_new_ids_decode_to_now_and_are_unique() -> None:
    before = now_ms()
    ids = [new_id() for _ in range(2_000)]
    after = now_ms()
    assert len(set(ids)) == len(ids)
    for text in ids:
        assert is_ulid(text)
        decoded = ULID.from_str(text)
        assert str(decoded) == text
        assert before <= decoded.milliseconds <= after


def test_ids_sort_by_time() -> None:
    assert ulid_of(1_000, (1 << 80) - 1) < ulid_of(1_001, 0)


def test_ids_of_one_process_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(5_000)]  # many share a millisecond
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        # float timestamp() * 1000 truncated these to one millisecond less
        ("2038-06-15T12:34:56.002Z", 2_160_218_096_002),
        ("2038-06-15T14:34:56.002+02:00", 2_160_218_096_002),
        ("9999-12-31T23:59:59.999Z", MAX_MS),
        ("0001-01-01T00:00:00.000Z", MIN_MS),
        ("1970-01-01T00:00:00.000Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        # digits below a millisecond are dropped, before 1970 as after
        ("2000-01-01T00:00:00.0019Z", 946_684_800_001),
        ("1969-12-31T23:59:59.9995Z", -1),
    ],
)
def test_ms_from_iso_is_exact(text: str, epoch_ms: int) -> None:
    assert ms_from_iso(text) == epoch_ms


def test_wire_times_round_trip_in_every_millisecond_position() -> None:
    # Every millisecond of a second in several years up to 9999 (float seconds lose precision most in far years),
    # and a coarse sweep over the whole range 0001-9999; the texts come from the standard library.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds = [
        (datetime(year, month, 15, 12, 34, 56, tzinfo=UTC) - epoch) // timedelta(seconds=1)
        for year in (1, 1600, 1969, 1970, 2025, 2038, 2106, 3000, 5000, 9999)
        for month in (1, 6, 12)
    ]
    sweep = [second * 1000 + millis for second in seconds for millis in range(1000)]
    sweep += [*range(MIN_MS, MAX_MS, 9_876_543_211), MAX_MS]
    texts = {ms: (epoch + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z" for ms in sweep}
    assert [text for ms, text in texts.items() if ms_from_iso(text) != ms] == []
    assert [text for text in texts.values() if iso_from_ms(ms_from_iso(text)) != text] == []


@pytest.mark.parametrize("randomness", [0, (1 << 30) - 3, (1 << 60) - 2, (1 << 80) - 6])
def test_ids_made_together_equal_those_made_one_by_one(randomness: int) -> None:
    # across carries into the shared prefix (2**30, 2**60) and up to the last randomness
    assert ulids_of(1469918176385, randomness, 6) == [ulid_of(1469918176385, randomness + i) for i in range(6)]


def test_new_ids_count_up_after_new_id_and_before_the_next() -> None:
    ids = [new_id(), *new_ids(500), new_id()]
    assert len(set(ids)) == 502
    assert ids == sorted(ids)  # within a millisecond they count up; across milliseconds time sorts them
    assert all(is_ulid(text) for text in ids)
