"""The job record and the transition table: pure code, one definition of each rule (no services needed)."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from service.domain.jobs import JOB_HASH_FIELDS, JOB_STATUSES, NON_TERMINAL_STATUSES, Job, NewJob
from service.stores import redis_callbacks, redis_jobs, redis_transitions
from service.stores.redis_transitions import OPERATIONS, POLL_LUA

SCHEDULED = NewJob("resize", b'{"w":640}', 3, 60, 1_800_000_000_000, "http://127.0.0.1:9/cb", b'{"X-A":"1"}')


def test_a_stored_job_reads_back_equal() -> None:
    job = Job.created("01J0000000000000000000000A", "01J0000000000000000000000B", SCHEDULED, 1_700_000_000_000)
    raw = {field.encode(): value.encode() for field, value in job.to_hash().items()}
    assert Job.from_hash(raw) == job
    assert set(job.to_hash()) == JOB_HASH_FIELDS
    assert len(JOB_HASH_FIELDS) == len(fields(Job))


def test_absent_values_are_stored_empty_and_read_as_none() -> None:
    unscheduled = NewJob("resize", b"null", 0, 30, None, None, None)
    job = Job.created("01J0000000000000000000000A", "01J0000000000000000000000B", unscheduled, 1)
    stored = job.to_hash()
    assert stored["status"] == "pending"
    assert [stored[f] for f in ("deliveredAt", "result", "callbackUrl", "scheduledFor")] == ["", "", "", ""]
    view = Job.from_hash({k.encode(): v.encode() for k, v in stored.items()}).view(detailed=True)
    assert (view["deliveredAt"], view["result"], view["callbackUrl"], view["callbackHeaders"]) == (None,) * 4


def _lua_sources() -> list[str]:
    return [
        *(operation.script for operation in OPERATIONS),
        POLL_LUA,
        redis_jobs.SET_PROGRESS_LUA,
        redis_jobs.GET_JOB_LUA,
        redis_callbacks.TAKE_LUA,
    ]


def test_scripts_name_only_fields_of_the_job_record() -> None:
    # Field names in the scripts are camelCase words in single quotes ('timeoutSeconds'), or one of the
    # one-word fields; both must be fields of the record that `Job.to_hash` writes.
    used: set[str] = set()
    for source in _lua_sources():
        used |= set(re.findall(r"'([a-z]+(?:[A-Z][a-z]+)+)'", source))
        used |= set(re.findall(r"field\('([A-Za-z]+)'\)", source))
        used |= set(re.findall(r"HSET', JOB, '([A-Za-z]+)'", source))
    assert used, "the patterns found no field at all"
    assert used <= JOB_HASH_FIELDS, used - JOB_HASH_FIELDS


def test_status_sets_in_lua_come_from_the_domain() -> None:
    source = redis_transitions.CLAIM.script
    assert "local TERMINAL = {completed=true, dead=true, killed=true}" in source
    assert "local ALLOWED = {pending=true}" in source
    places = re.search(r"local INDEX = \{([^}]*)\}", source)
    assert places is not None
    assert [entry.split("=")[0].strip() for entry in places.group(1).split(",")] == list(JOB_STATUSES)
    assert "local TERMINAL = {completed=true, dead=true, killed=true}" in redis_jobs.SET_PROGRESS_LUA


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (redis_transitions.CLAIM, "Job is running; claim requires a pending job"),
        (redis_transitions.ACK, "Job is running; ack requires a delivered job"),
        (redis_transitions.KEEPALIVE, "Job is running; keepalive requires a running job"),
        (redis_transitions.COMPLETE, "Job is running; complete requires a running job"),
        (redis_transitions.FAIL, "Job is running; fail requires a delivered or running job"),
        (redis_transitions.KILL, "Job is running; kill requires a non-terminal job"),
        (redis_transitions.CHECKPOINT, "Job is running; checkpoint requires a non-terminal job"),
        (redis_transitions.EVENT, "Job is running; event requires a non-terminal job"),
    ],
)
def test_wrong_state_messages_come_from_the_allowed_states(
    operation: redis_transitions.Operation, message: str
) -> None:
    assert str(operation.wrong_state("running")) == message
    assert operation.allowed is not None
    guard = re.search(r"local ALLOWED = \{([^}]*)\}", operation.script)
    assert guard is not None
    assert {entry.split("=")[0].strip() for entry in guard.group(1).split(",")} == operation.allowed


def test_only_the_sweep_operations_have_no_guard() -> None:
    unguarded = {operation.action for operation in OPERATIONS if operation.allowed is None}
    assert unguarded == {"timeout", "promote"}
    assert redis_transitions.KILL.allowed == NON_TERMINAL_STATUSES
