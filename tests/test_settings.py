"""Settings come from JOBLENS_* variables; bad values fail with a message naming the variable."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError


def test_defaults_are_loopback_and_safe() -> None:
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.redis_url.startswith("redis://127.0.0.1")
    assert settings.elasticsearch_urls == ("http://127.0.0.1:9200",)
    assert settings.rate_limit_per_s == 1000
    assert settings.log_lease_s <= 60


def test_values_are_parsed_into_their_types() -> None:
    settings = Settings.from_env(
        {
            "JOBLENS_PORT": "9000",
            "JOBLENS_ELASTICSEARCH_URL": "http://a:9200, http://b:9200",
            "JOBLENS_RATE_LIMIT_PER_S": "50",
            "JOBLENS_LOG_LEASE_S": "12.5",
            "JOBLENS_BACKGROUND_TASKS": "false",
            "JOBLENS_READ_CACHE_ENTRIES": "0",
            "JOBLENS_ACCESS_LOG": "off",
        }
    )
    assert (settings.port, settings.elasticsearch_urls, settings.rate_limit_per_s) == (
        9000,
        ("http://a:9200", "http://b:9200"),
        50,
    )
    assert settings.log_lease_s == 12.5
    assert settings.background_tasks is False
    assert (settings.read_cache_entries, settings.access_log) == (0, False)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOBLENS_PORT", "eighty", "JOBLENS_PORT must be an integer, got 'eighty'"),
        ("JOBLENS_PORT", "70000", "JOBLENS_PORT must be an integer between 1 and 65535, got 70000"),
        ("JOBLENS_REDIS_URL", "localhost:6379", "JOBLENS_REDIS_URL must be a redis:// URL, got 'localhost:6379'"),
        ("JOBLENS_ELASTICSEARCH_URL", "es:9200", "JOBLENS_ELASTICSEARCH_URL must be comma-separated http(s)://"),
        ("JOBLENS_LOG_LEASE_S", "600", "JOBLENS_LOG_LEASE_S must be a number of seconds in (0, 60], got 600.0"),
        ("JOBLENS_BACKGROUND_TASKS", "maybe", "JOBLENS_BACKGROUND_TASKS must be true or false, got 'maybe'"),
        (
            "JOBLENS_READ_CACHE_ENTRIES",
            "-1",
            "JOBLENS_READ_CACHE_ENTRIES must be an integer >= 0 (0 turns the cache off)",
        ),
        ("JOBLENS_INDEX_PREFIX", "Logs_", "JOBLENS_INDEX_PREFIX must be lower-case letters, digits and '-'"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value).startswith(message)
