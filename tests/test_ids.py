"""Our ULID encoder (pure functions: no services needed), checked against the spec and python-ulid."""

from __future__ import annotations

from ulid import ULID

from service.domain.clock import is_ulid, new_id, now_ms, ulid_of


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
