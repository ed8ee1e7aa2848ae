"""Settings come from JOBLENS_* variables; bad values fail with a message naming the variable."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError

DURATION_MUST = "must be a number of seconds in (0, 86400]"
GRACE_MUST = "JOBLENS_LOG_CLEANUP_GRACE_S must be a number of seconds from JOBLENS_LOG_LEASE_S to 86400"
TTL_MUST = "JOBLENS_IDEMPOTENCY_TTL_S must be an integer number of seconds between 1 and 31536000 (a year)"
REFRESH_MUST = "JOBLENS_INDEX_REFRESH_INTERVAL_S must be a number of seconds from 0.001 to 86400"
PREFIX_MUST = (
    "JOBLENS_INDEX_PREFIX must be lower-case letters, digits and '-', not starting with '-', at most 247 characters"
    " (log indices are named <prefix>-YYYY.MM)"
)


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
            "JOBLENS_LOG_CLEANUP_GRACE_S": "12.5",
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
    assert (settings.log_lease_s, settings.log_cleanup_grace_s) == (12.5, 12.5)
    assert settings.background_tasks is False
    assert (settings.read_cache_entries, settings.access_log) == (0, False)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOBLENS_PORT", "eighty", "JOBLENS_PORT must be an integer, got 'eighty'"),
        ("JOBLENS_PORT", "70000", "JOBLENS_PORT must be an integer between 1 and 65535, got 70000"),
        ("JOBLENS_REDIS_URL", "localhost:6379", "JOBLENS_REDIS_URL must be a redis:// URL, got 'localhost:6379'"),
        ("JOBLENS_ELASTICSEARCH_URL", "es:9200", "JOBLENS_ELASTICSEARCH_URL must be comma-separated http(s)://"),
        ("JOBLENS_LOG_LEASE_S", "600", "JOBLENS_LOG_LEASE_S must be a number of seconds in [0.001, 60], got 600.0"),
        ("JOBLENS_LOG_LEASE_S", "0.0001", "JOBLENS_LOG_LEASE_S must be a number of seconds in [0.001, 60], got 0.0001"),
        ("JOBLENS_LOG_LEASE_S", "nan", "JOBLENS_LOG_LEASE_S must be a number of seconds in [0.001, 60], got nan"),
        ("JOBLENS_BACKGROUND_TASKS", "maybe", "JOBLENS_BACKGROUND_TASKS must be true or false, got 'maybe'"),
        (
            "JOBLENS_READ_CACHE_ENTRIES",
            "-1",
            "JOBLENS_READ_CACHE_ENTRIES must be an integer >= 0 (0 turns the cache off)",
        ),
        ("JOBLENS_INDEX_PREFIX", "Logs_", "JOBLENS_INDEX_PREFIX must be lower-case letters, digits and '-'"),
        ("JOBLENS_LOG_CLEANUP_GRACE_S", "29", f"{GRACE_MUST}, got 29.0"),
        ("JOBLENS_LOG_CLEANUP_GRACE_S", "inf", f"{GRACE_MUST}, got inf"),
        ("JOBLENS_IDEMPOTENCY_TTL_S", "-1", f"{TTL_MUST}, got -1"),
        ("JOBLENS_IDEMPOTENCY_TTL_S", "0", f"{TTL_MUST}, got 0"),
        ("JOBLENS_IDEMPOTENCY_TTL_S", "99999999999999999999", f"{TTL_MUST}, got 99999999999999999999"),
        ("JOBLENS_IDEMPOTENCY_TTL_S", "1.5", "JOBLENS_IDEMPOTENCY_TTL_S must be an integer, got '1.5'"),
        ("JOBLENS_BODY_TIMEOUT_S", "nan", f"JOBLENS_BODY_TIMEOUT_S {DURATION_MUST}, got nan"),
        ("JOBLENS_BODY_TIMEOUT_S", "-1", f"JOBLENS_BODY_TIMEOUT_S {DURATION_MUST}, got -1.0"),
        ("JOBLENS_BODY_TIMEOUT_S", "0", f"JOBLENS_BODY_TIMEOUT_S {DURATION_MUST}, got 0.0"),
        ("JOBLENS_IDLE_TIMEOUT_S", "0", f"JOBLENS_IDLE_TIMEOUT_S {DURATION_MUST}, got 0.0"),
        ("JOBLENS_TIMEOUT_LOOP_INTERVAL_S", "-1", f"JOBLENS_TIMEOUT_LOOP_INTERVAL_S {DURATION_MUST}, got -1.0"),
        ("JOBLENS_TIMEOUT_LOOP_INTERVAL_S", "0", f"JOBLENS_TIMEOUT_LOOP_INTERVAL_S {DURATION_MUST}, got 0.0"),
        ("JOBLENS_CONNECT_TIMEOUT_S", "inf", f"JOBLENS_CONNECT_TIMEOUT_S {DURATION_MUST}, got inf"),
        ("JOBLENS_CONNECT_TIMEOUT_S", "-inf", f"JOBLENS_CONNECT_TIMEOUT_S {DURATION_MUST}, got -inf"),
        ("JOBLENS_ES_REQUEST_TIMEOUT_S", "0", f"JOBLENS_ES_REQUEST_TIMEOUT_S {DURATION_MUST}, got 0.0"),
        ("JOBLENS_CALLBACK_TIMEOUT_S", "1e308", f"JOBLENS_CALLBACK_TIMEOUT_S {DURATION_MUST}, got 1e+308"),
        ("JOBLENS_CALLBACK_BACKOFF_S", "-0.5", f"JOBLENS_CALLBACK_BACKOFF_S {DURATION_MUST}, got -0.5"),
        ("JOBLENS_CALLBACK_BACKOFF_S", "86401", f"JOBLENS_CALLBACK_BACKOFF_S {DURATION_MUST}, got 86401.0"),
        ("JOBLENS_INDEX_REFRESH_INTERVAL_S", "-1", f"{REFRESH_MUST}, got -1.0"),
        ("JOBLENS_INDEX_REFRESH_INTERVAL_S", "0", f"{REFRESH_MUST}, got 0.0"),
        ("JOBLENS_INDEX_REFRESH_INTERVAL_S", "0.0004", f"{REFRESH_MUST}, got 0.0004"),
        ("JOBLENS_INDEX_REFRESH_INTERVAL_S", "nan", f"{REFRESH_MUST}, got nan"),
        ("JOBLENS_INDEX_REFRESH_INTERVAL_S", "86401", f"{REFRESH_MUST}, got 86401.0"),
        ("JOBLENS_INDEX_PREFIX", "-reviewa", f"{PREFIX_MUST}, got '-reviewa'"),
        ("JOBLENS_INDEX_PREFIX", "_logs", f"{PREFIX_MUST}, got '_logs'"),
        ("JOBLENS_INDEX_PREFIX", "+logs", f"{PREFIX_MUST}, got '+logs'"),
        ("JOBLENS_INDEX_PREFIX", ".logs", f"{PREFIX_MUST}, got '.logs'"),
        ("JOBLENS_INDEX_PREFIX", "job logs", f"{PREFIX_MUST}, got 'job logs'"),
        ("JOBLENS_INDEX_PREFIX", "logs:prod", f"{PREFIX_MUST}, got 'logs:prod'"),
        ("JOBLENS_INDEX_PREFIX", "logs#1", f"{PREFIX_MUST}, got 'logs#1'"),
        ("JOBLENS_INDEX_PREFIX", "a/b", f"{PREFIX_MUST}, got 'a/b'"),
        ("JOBLENS_INDEX_PREFIX", "jobLogs", f"{PREFIX_MUST}, got 'jobLogs'"),
        ("JOBLENS_INDEX_PREFIX", "lögs", f"{PREFIX_MUST}, got 'lögs'"),
        ("JOBLENS_INDEX_PREFIX", "a" * 248, f"{PREFIX_MUST}, got '{'a' * 248}'"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value).startswith(message)


def test_edges_of_each_range_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "JOBLENS_IDEMPOTENCY_TTL_S": "1",
            "JOBLENS_BODY_TIMEOUT_S": "0.001",
            "JOBLENS_IDLE_TIMEOUT_S": "86400",
            "JOBLENS_TIMEOUT_LOOP_INTERVAL_S": "0.05",
            "JOBLENS_CONNECT_TIMEOUT_S": "0.5",
            "JOBLENS_LOG_LEASE_S": "2",
            "JOBLENS_INDEX_REFRESH_INTERVAL_S": "1",
            "JOBLENS_INDEX_PREFIX": "2026-jobs-" + "x" * 237,
        }
    )
    assert (settings.idempotency_ttl_s, settings.body_timeout_s, settings.idle_timeout_s) == (1, 0.001, 86400)
    assert (settings.log_lease_s, settings.index_refresh_interval_s) == (2, 1)
    assert len(settings.index_prefix) == 247
    # Appends refresh by themselves: a short lease does not need a quick scheduled refresh.
    assert Settings.from_env({"JOBLENS_LOG_LEASE_S": "0.4"}).index_refresh_interval_s == 1.0
