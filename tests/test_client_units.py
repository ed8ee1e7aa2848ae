"""The client's pure parts, without a server: the SSE parser fed in arbitrary chunks, the backoff's bounds, what
terminal output lets through, the configuration's precedence, and small parsers."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from joblens_client.backoff import Backoff
from joblens_client.client import api_root, space_of_key
from joblens_client.config import ConfigError, resolve
from joblens_client.handler import fit_utf8, level_of, plain
from joblens_client.render import clean, highlighted
from joblens_client.sse import SseEvent, SseParser
from joblens_client.terminal import when

STREAM = (
    b"retry: 2000\n\n"
    b": ping\n\n"
    b"event: logs\nid: 7\ndata: " + b'{"logs": [' + b'{"seq": 7, "message": "' + b"x" * 300_000 + b'"}]}\n\n'
    b'event: status\r\ndata: {"status": "running"}\r\n\r\n'
    b"data: first\ndata: second\n\n"
    b"event: end\nid: 7\ndata: {}\n\n"
)


def test_the_sse_parser_gives_the_same_events_however_the_bytes_are_cut() -> None:
    whole = SseParser()
    expected = whole.feed(STREAM)
    assert [(e.event, e.id, len(e.data)) for e in expected] == [
        ("logs", "7", len('{"logs": [{"seq": 7, "message": "') + 300_000 + 4),
        ("status", None, 21),
        ("message", None, 12),
        ("end", "7", 2),
    ]
    assert expected[2] == SseEvent("message", "first\nsecond", None) and whole.retry_ms == 2000
    rng = random.Random(3)
    for _ in range(20):
        parser, events, position = SseParser(), [], 0
        while position < len(STREAM):
            size = rng.choice([1, 2, 7, 100, 65_536])
            events += parser.feed(STREAM[position : position + size])
            position += size
        assert events == expected


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(base_s=0.2, cap_s=5.0)
    for attempt, ceiling in [(0, 0.2), (1, 0.4), (3, 1.6), (10, 5.0), (500, 5.0)]:
        delays = [backoff.delay_s(attempt) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
    assert backoff.delay_s(0, retry_after_s=3) == 3


def test_terminal_text_cannot_carry_control_sequences() -> None:
    message = "\x1b[1;31mred\x1b[0m \x1b]2;title\x07 \x1b[H\x9b2J bell\x07 tab\tnew\nline\r\n"
    assert (
        clean(message, colour=True)
        == "\x1b[1;31mred\x1b[0m \\x1b]2;title\\x07 \\x1b[H\\x9b2J bell\\x07 tab\tnew\nline\n"
    )
    assert clean(message, colour=False) == "red \\x1b]2;title\\x07 \\x1b[H\\x9b2J bell\\x07 tab\tnew\nline\n"
    assert highlighted("a needle here", ((2, 8),), colour=True) == "a \x1b[1;7mneedle\x1b[0m here"
    assert highlighted("a needle here", ((2, 8),), colour=False) == "a needle here"


def test_configuration_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    (tmp_path / "k").write_text("emit_from_file\n")
    config.write_text(
        'default_profile = "a"\n[profiles.a]\nurl = "http://a"\napi_key_file = "' + str(tmp_path / "k") + '"\n'
        '[profiles.b]\nurl = "http://b"\napi_key_env = "B_KEY"\nspace = "S"\n'
    )
    base = {"JOBLENS_CONFIG": str(config)}
    assert (resolve(None, None, base).url, resolve(None, None, base).api_key) == ("http://a", "emit_from_file")
    env = base | {"JOBLENS_URL": "http://env", "JOBLENS_API_KEY": "emit_env", "B_KEY": "emit_b"}
    assert (resolve(None, None, env).url, resolve(None, None, env).api_key) == ("http://env", "emit_env")
    chosen = resolve(None, "b", env)
    assert (chosen.url, chosen.api_key, chosen.space) == ("http://b", "emit_b", "S")
    assert resolve("http://flag", "b", env).url == "http://flag"
    assert "emit_b" not in repr(chosen)
    with pytest.raises(ConfigError, match="no profile 'c'"):
        resolve(None, "c", env)
    with pytest.raises(ConfigError, match="no joblens URL"):
        resolve(None, None, {"JOBLENS_CONFIG": str(tmp_path / "missing.toml")})
    config.write_text('[profiles.a]\nurl = "http://a"\napi_kee = "typo"\n')
    with pytest.raises(ConfigError, match="unknown field 'api_kee'"):
        resolve(None, None, base)


def test_small_parsers() -> None:
    space = "01J0000000000000000000000A"
    assert space_of_key(f"emit_{space}_secret") == space and space_of_key("emit_short_x") is None
    assert api_root("http://h:8080/") == api_root("http://h:8080/api/v1") == "http://h:8080/api/v1"
    with pytest.raises(ValueError, match="http"):
        api_root("h:8080")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        when("15m", now) == "2026-01-02T02:49:05.000Z" and when("2026-01-01T00:00:00Z", now) == "2026-01-01T00:00:00Z"
    )
    levels = ["trace", "debug", "info", "warn", "error", "fatal", "fatal"]
    assert [level_of(n) for n in (5, 10, 20, 30, 40, 50, 60)] == levels
    cut = fit_utf8("é" * 100, 50)
    assert len(cut.encode()) <= 50 and cut.endswith("…[truncated]")
    assert plain({"s": {1}, "d": datetime(2026, 1, 1, tzinfo=UTC), 1: object}) == {
        "s": [1],
        "d": "2026-01-01T00:00:00.000Z",
        "1": "<class 'object'>",
    }
