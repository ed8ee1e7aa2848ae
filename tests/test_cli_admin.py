"""The ``joblens`` admin commands, run as a user runs them: ``python -m service.cli`` in a subprocess against the
test Redis database. A created key is printed alone on stdout (so ``KEY=$(joblens keys create …)`` works);
listings never print a key."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from dirty_equals import IsStr
from redis.asyncio import Redis

from devstack.ports import free_port
from service.services.auth import LEASE_TTL_S
from service.settings import Settings
from service.stores.redis_api_keys import ApiKeyStore
from tests.helpers import AppFactory, Run, body, run_joblens
from tests.matchers import ISO_TIME, ULID


async def joblens(settings: Settings, *args: str) -> Run:
    return await run_joblens(*args, env={"JOBLENS_REDIS_URL": settings.redis_url})


def json_lines(text: str) -> list[Any]:
    return [orjson.loads(line) for line in text.splitlines()]


async def test_spaces_and_keys_round_trip(settings: Settings, redis: Redis, make_client: AppFactory) -> None:
    created = await joblens(settings, "spaces", "create", "videos")
    assert [created.code, created.stdout] == [0, IsStr(regex=rf"{ULID}\n")]
    videos = created.stdout.strip()
    audio = (await ApiKeyStore(redis).create_space("audio"))["id"]

    spaces = await joblens(settings, "spaces", "list")
    assert spaces.code == 0
    # Only this test's spaces: the test database is shared with whatever else runs against it.
    ours = [space for space in json_lines(spaces.stdout) if space["id"] in (videos, audio)]
    assert ours == sorted(
        [
            {"id": videos, "name": "videos", "createdAt": IsStr(regex=ISO_TIME)},
            {"id": audio, "name": "audio", "createdAt": IsStr(regex=ISO_TIME)},
        ],
        key=lambda space: str(space["id"]),
    )

    reader, worker = await asyncio.gather(
        joblens(settings, "keys", "create", "--space", videos, "--scopes", "jobs:read", "--name", "dashboard"),
        joblens(settings, "keys", "create", "--space", videos, "--scopes", "jobs:create, jobs:worker"),
    )
    for run in (reader, worker):
        # Only the key on stdout; everything meant for a person goes to stderr.
        assert [run.code, run.stdout] == [0, IsStr(regex=rf"emit_{videos}_[A-Za-z0-9_-]{{20,100}}\n")]
        assert run.stderr == IsStr(regex=rf"key id {ULID} \(the key is shown only this once\)\n")
    reader_key, worker_key = reader.stdout.strip(), worker.stdout.strip()
    reader_id, worker_id = (run.stderr.split()[2] for run in (reader, worker))

    listed = await joblens(settings, "keys", "list", "--space", videos)
    described = {
        reader_id: {"name": "dashboard", "scopes": ["jobs:read"]},
        worker_id: {"name": "", "scopes": ["jobs:create", "jobs:worker"]},
    }
    assert (listed.code, json_lines(listed.stdout)) == (
        0,
        [
            {
                "keyId": key_id,
                "spaceId": videos,
                "createdAt": IsStr(regex=ISO_TIME),
                "revokedAt": None,
                **described[key_id],
            }
            for key_id in sorted(described)
        ],
    )
    # the secret follows "emit_<spaceId>_" (it may itself contain '_')
    secrets = [key.removeprefix(f"emit_{videos}_") for key in (reader_key, worker_key)]
    assert all(len(secret) >= 40 for secret in secrets)
    assert [secret in listed.stdout + listed.stderr for secret in secrets] == [False, False]
    assert await ApiKeyStore(redis).list_keys(audio) == []

    # The printed keys work against the service, each with its scopes.
    client = await make_client()
    jobs_path = f"/api/v1/spaces/{videos}/jobs"
    assert await body(await client.get(jobs_path, headers={"x-api-key": reader_key}), 200) == []
    await body(await client.post(jobs_path, json={"name": "n"}, headers={"Authorization": f"Bearer {worker_key}"}), 201)
    refused = await client.post(jobs_path, json={"name": "n"}, headers={"x-api-key": reader_key})
    assert await body(refused, 403) == {"error": "Missing required scope: jobs:create"}

    revoked = await joblens(settings, "keys", "revoke", reader_id)
    assert revoked == Run(0, "", f"revoked {reader_id}\n")
    await asyncio.sleep(LEASE_TTL_S)  # an instance may serve from its token lease until it lapses
    assert await body(await client.get(jobs_path, headers={"x-api-key": reader_key}), 401) == {
        "error": "Invalid or revoked API key"
    }
    assert await body(await client.get(jobs_path, headers={"x-api-key": worker_key}), 200) != []
    after = await joblens(settings, "keys", "list", "--space", videos)
    assert [(key["keyId"], key["revokedAt"]) for key in json_lines(after.stdout)] == sorted(
        [(reader_id, IsStr(regex=ISO_TIME)), (worker_id, None)], key=lambda pair: str(pair[0])
    )
    assert reader_key not in after.stdout


async def test_admin_mistakes_exit_non_zero_with_nothing_on_stdout(settings: Settings, redis: Redis) -> None:
    space = (await ApiKeyStore(redis).create_space("s"))["id"]
    runs = await asyncio.gather(
        joblens(settings, "keys", "create", "--space", space, "--scopes", "jobs:bogus"),
        joblens(settings, "keys", "create", "--space", space, "--scopes", " , "),
        joblens(settings, "keys", "create", "--space", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--scopes", "jobs:read"),
        joblens(settings, "keys", "revoke", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    )
    assert [(run.code, run.stdout) for run in runs] == [(2, ""), (2, ""), (1, ""), (1, "")]
    assert [run.stderr.splitlines()[0] for run in runs] == [
        IsStr(regex=r"joblens: --scopes: unknown scope\(s\) jobs:bogus; allowed: .*jobs:read.*"),
        IsStr(regex=r"joblens: --scopes: unknown scope\(s\) \(none given\); allowed: .*"),
        "joblens: no space '01ARZ3NDEKTSV4RRFFQ69G5FAV'; create one with `joblens spaces create NAME`",
        "joblens: no key '01ARZ3NDEKTSV4RRFFQ69G5FAV'",
    ]
    assert await ApiKeyStore(redis).list_keys(space) == []


async def test_unreachable_redis_is_one_line_without_the_password() -> None:
    port = free_port()
    unreachable = Settings(redis_url=f"redis://admin:hunter2-secret@127.0.0.1:{port}/0?password=hunter3-secret")
    runs = await asyncio.gather(
        joblens(unreachable, "spaces", "list"),
        joblens(unreachable, "spaces", "create", "videos"),
        joblens(unreachable, "keys", "list", "--space", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    )
    line: object = IsStr(regex=rf"joblens: cannot reach Redis at redis://127\.0\.0\.1:{port}/0 \(.*\b{port}\b.*\)\n")
    assert [(run.code, run.stdout, run.stderr) for run in runs] == [(1, "", line)] * 3
    assert [("Traceback" in run.stderr, "secret" in run.stderr, "admin" in run.stderr) for run in runs] == [
        (False, False, False)
    ] * 3
