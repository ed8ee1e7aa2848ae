"""The terminal client run as a user runs it (the ``joblens`` command, in a subprocess) against a real joblens:
jobs, progress, logs in each mode, text and NDJSON output, errors as one line, configuration from the environment
and from profiles, and a closed pipe (``| head``) handled quietly."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from joblens_client import AsyncJoblens
from tests.client_helpers import base_url, key_of, terminal, terminal_env
from tests.helpers import JOBLENS, Tenant, body


async def make_job_with_lines(url: str, api_key: str, count: int, **fields: Any) -> str:
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("printed", **fields)
        levels = ["info", "warn", "error"]
        for start in range(0, count, 1000):
            batch = range(start, min(start + 1000, count))
            await jl.append_logs(job.id, [{"message": f"line {n + 1}", "level": levels[n % 3]} for n in batch])
        return job.id


def seqs_of(text: str) -> list[int]:
    return [int(line.split()[-1]) for line in text.splitlines()]


async def test_jobs_list_and_get(client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        first = await jl.create_job("resize", {"w": 640})
        second = await jl.create_job("encode")
        await jl.claim(second.id)

    listed = await terminal(url, api_key, "jobs", "list")
    assert (listed.code, listed.stderr) == (0, "")
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "ATTEMPT", "CREATED", "NAME"]
    assert [row.split()[:3] + row.split()[-1:] for row in rows] == [
        [second.id, "delivered", "0/3", "encode"],
        [first.id, "pending", "0/3", "resize"],
    ]
    pending = await terminal(url, api_key, "jobs", "list", "--status", "pending", "--limit", "5", "-o", "json")
    answer = await body(await client.get(f"/api/v1/spaces/{tenant.space_id}/jobs?status=pending", headers=admin), 200)
    assert [orjson.loads(line) for line in pending.stdout.splitlines()] == answer  # the API's objects, one a line

    shown = await terminal(url, api_key, "jobs", "get", first.id)
    assert shown.code == 0
    assert f"id         {first.id}" in shown.stdout.splitlines()
    assert 'payload    {"w":640}' in shown.stdout.splitlines()
    assert shown.stdout.splitlines()[-2:] == ["events", f"  {first.created_at}  created"]
    as_json = await terminal(url, api_key, "jobs", "get", first.id, "-o", "json")
    assert orjson.loads(as_json.stdout) == await body(await client.get(f"/api/v1/jobs/{first.id}", headers=admin), 200)


async def test_progress(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("progressing")
        assert (await terminal(url, api_key, "progress", job.id)).stdout == "no progress reported yet\n"
        await jl.claim(job.id)
        await jl.ack(job.id)
        await jl.report_progress(job.id, 42.5, "resizing", {"download": 100, "scale": 20})
    shown = await terminal(url, api_key, "progress", job.id)
    assert (shown.code, shown.stdout) == (0, "42.5% resizing\n  download: 100%\n  scale: 20%\n")
    as_json = await terminal(url, api_key, "progress", job.id, "-o", "json")
    assert orjson.loads(as_json.stdout)["progress"]["subProgress"] == {
        "download": {"percent": 100},
        "scale": {"percent": 20},
    }


async def test_logs_in_every_mode(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    job_id = await make_job_with_lines(url, api_key, 1200)

    everything = await terminal(url, api_key, "logs", job_id)
    assert (everything.code, everything.stderr) == (0, "")
    assert seqs_of(everything.stdout) == list(range(1, 1201))  # page after page, in order
    first = everything.stdout.splitlines()[0]
    time, level, message = first.split(" ", 2)
    assert (len(time), level, message) == (24, "INFO", " line 1")  # the level is padded to 5 columns

    assert seqs_of((await terminal(url, api_key, "logs", job_id, "--tail", "3")).stdout) == [1198, 1199, 1200]
    assert seqs_of((await terminal(url, api_key, "logs", job_id, "--tail", "700")).stdout) == list(range(501, 1201))
    assert seqs_of((await terminal(url, api_key, "logs", job_id, "--after", "1195")).stdout) == list(range(1196, 1201))
    after = await terminal(url, api_key, "logs", job_id, "--after", "10", "--limit", "3")
    assert seqs_of(after.stdout) == [11, 12, 13]
    before = await terminal(url, api_key, "logs", job_id, "--before", "600", "--limit", "502")
    assert seqs_of(before.stdout) == list(range(98, 600))
    assert seqs_of((await terminal(url, api_key, "logs", job_id, "--before", "4")).stdout) == [1, 2, 3]
    errors = await terminal(url, api_key, "logs", job_id, "--level", "error", "-q", "line", "--tail", "2")
    assert [line.split()[1:] for line in errors.stdout.splitlines()] == [
        ["ERROR", "line", "1197"],
        ["ERROR", "line", "1200"],
    ]

    as_json = await terminal(url, api_key, "logs", job_id, "--after", "0", "--limit", "500", "-o", "json")
    page = await body(await client.get(f"/api/v1/jobs/{job_id}/logs?after=0&limit=500", headers=admin), 200)
    assert [orjson.loads(line) for line in as_json.stdout.splitlines()] == page["logs"]


async def test_a_message_cannot_drive_the_terminal(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        job = await jl.create_job("escapes")
        message = "\x1b[31mred\x1b[0m \x1b]0;pwned\x07 \x1b[2J cleared\rback\nsecond line"
        await jl.append_logs(job.id, [{"message": message}])
    shown = await terminal(url, api_key, "logs", job.id)
    # Off a terminal: colours stripped, every other escape and control shown escaped, continuation lines indented.
    assert shown.stdout.split(" ", 2)[2] == " red \\x1b]0;pwned\\x07 \\x1b[2J cleared\\x0dback\n    second line\n"


async def test_errors_are_one_line_and_the_key_is_never_shown(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str]
) -> None:
    url, api_key = base_url(client), key_of(admin)
    missing = await terminal(url, api_key, "jobs", "get", "01J00000000000000000000000")
    assert (missing.code, missing.stdout, missing.stderr) == (1, "", "joblens: Job not found (HTTP 404)\n")
    wrong_key = f"emit_{tenant.space_id}_this-secret-is-wrong-and-long-enough"
    refused = await terminal(url, wrong_key, "jobs", "list")
    assert refused.code == 1 and "check JOBLENS_API_KEY" in refused.stderr
    assert "this-secret" not in refused.stderr + refused.stdout
    no_url = await run_without(["JOBLENS_URL"], api_key, "jobs", "list")
    assert (no_url.code, no_url.stderr.startswith("joblens: no joblens URL")) == (2, True)
    usage = await terminal(url, api_key, "logs", "J", "-f", "--before", "3")
    assert (usage.code, usage.stderr) == (
        2,
        "joblens: -f follows from --after SEQ or from --tail N; --before and --around read history\n",
    )
    both = await terminal(url, api_key, "logs", "J", "--after", "1", "--before", "3")
    assert both.code == 2 and "not allowed with argument" in both.stderr  # argparse: one of them
    unreachable = await terminal("http://127.0.0.1:9", api_key, "jobs", "list")
    assert unreachable.code == 1 and unreachable.stderr.startswith(
        "joblens: cannot reach joblens at http://127.0.0.1:9"
    )
    for run in (missing, refused, no_url, usage, unreachable):
        assert api_key not in run.stdout + run.stderr


async def run_without(names: list[str], api_key: str, *args: str) -> Any:
    from tests.helpers import Run

    env = {k: v for k, v in os.environ.items() if k not in names}
    env |= {"JOBLENS_API_KEY": api_key, "JOBLENS_CONFIG": "/nonexistent/joblens.toml"}
    process = await asyncio.create_subprocess_exec(
        JOBLENS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def test_profiles_from_the_config_file(
    client: TestClient[Any, Any], tenant: Tenant, admin: dict[str, str], tmp_path: Path
) -> None:
    url, api_key = base_url(client), key_of(admin)
    job_id = await make_job_with_lines(url, api_key, 2)
    key_file = tmp_path / "local.key"
    key_file.write_text(api_key + "\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f'default_profile = "local"\n\n[profiles.local]\nurl = "{url}"\napi_key_file = "{key_file}"\n\n'
        f'[profiles.broken]\nurl = "http://127.0.0.1:9"\napi_key_env = "BROKEN_KEY"\n'
    )
    env = {"JOBLENS_CONFIG": str(config), "JOBLENS_URL": "", "JOBLENS_API_KEY": ""}
    from tests.helpers import run_joblens

    by_default = await run_joblens("logs", job_id, env=env)
    assert (by_default.code, seqs_of(by_default.stdout)) == (0, [1, 2])
    named = await run_joblens("logs", job_id, "--profile", "broken", env=env)
    assert (named.code, named.stderr) == (
        2,
        "joblens: profile 'broken': the environment variable BROKEN_KEY (api_key_env) is not set\n",
    )
    unknown = await run_joblens("logs", job_id, "--profile", "nope", env=env)
    assert (unknown.code, unknown.stderr) == (2, "joblens: no profile 'nope' (profiles: broken, local)\n")
    # The environment wins over the file's default profile; --url wins over everything.
    from_env = await run_joblens("logs", job_id, env={**env, "JOBLENS_URL": "http://127.0.0.1:9"})
    assert from_env.code == 1 and "127.0.0.1:9" in from_env.stderr
    flag = await run_joblens("logs", job_id, "--url", url, env={**env, "JOBLENS_URL": "http://127.0.0.1:9"})
    assert seqs_of(flag.stdout) == [1, 2]

    # A key written into a file others can read: it works, with a warning.
    config.write_text(f'[profiles.default]\nurl = "{url}"\napi_key = "{api_key}"\n')
    config.chmod(0o644)
    inline = await run_joblens("logs", job_id, env=env)
    assert (
        inline.code == 0
        and inline.stderr == f"joblens: warning: {config} holds an API key and others may read it (chmod 600)\n"
    )
    config.chmod(0o600)
    assert (await run_joblens("logs", job_id, env=env)).stderr == ""


async def test_a_closed_pipe_ends_quietly(client: TestClient[Any, Any], admin: dict[str, str]) -> None:
    url, api_key = base_url(client), key_of(admin)
    job_id = await make_job_with_lines(url, api_key, 5000)  # far more than a pipe holds
    script = f'"{JOBLENS}" logs {job_id} | head -n 3; echo "status ${{PIPESTATUS[0]}}" >&2'
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env={**os.environ, **terminal_env(url, api_key)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert seqs_of(stdout.decode()) == [1, 2, 3]
    assert stderr.decode() == "status 141\n"  # no traceback, no "Exception ignored" at exit
