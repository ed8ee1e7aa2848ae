"""``joblens logs -f`` run as a user runs it: it follows the live stream, prints each line once in order across an
instance restart (SIGKILL, then SIGTERM) while another instance takes the appends, and exits when the job's log
ends with a status that tells how the job ended."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from joblens_client import AsyncJoblens
from service.settings import Settings
from tests.client_helpers import ServeProcess, base_url, key_of, terminal_env
from tests.helpers import JOBLENS, AppFactory

FAST = {"stream_poll_interval_s": 0.2, "stream_quiet_period_s": 0.3}


@dataclass
class Running:
    """A ``joblens`` command still running; its output lines as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def read_until(self, count: int, timeout_s: float = 30) -> list[str]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while len(self.lines) < count:
                raw = await self.process.stdout.readline()
                assert raw, f"the command ended after {len(self.lines)} lines"
                self.lines.append(raw.decode().rstrip("\n"))
        return self.lines

    async def exit_code(self, timeout_s: float = 30) -> int:
        assert self.process.stdout is not None and self.process.stderr is not None
        rest, errors = await asyncio.wait_for(self.process.communicate(), timeout_s)
        self.lines += rest.decode().splitlines()
        assert errors == b"", errors.decode()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def running(url: str, api_key: str, *args: str) -> AsyncIterator[Running]:
    process = await asyncio.create_subprocess_exec(
        JOBLENS,
        *args,
        env={**os.environ, **terminal_env(url, api_key)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def lines(tag: str, count: int) -> list[dict[str, Any]]:
    return [{"message": f"{tag} {n}"} for n in range(count)]


async def test_follow_exits_with_a_status_telling_how_the_job_ended(
    make_client: AppFactory, admin: dict[str, str]
) -> None:
    server = await make_client(**FAST)
    url, api_key = base_url(server), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        for ending, expected in (("complete", 0), ("dead", 3), ("kill", 4)):
            job = await jl.create_job(f"ends-{ending}", max_retries=0)
            await jl.append_logs(job.id, lines("old", 10))
            async with running(url, api_key, "logs", job.id, "-f", "--tail", "3") as follow:
                assert [line.split(" ", 2)[2] for line in await follow.read_until(3)] == [
                    " old 7",
                    " old 8",
                    " old 9",
                ]
                await jl.append_logs(job.id, lines("new", 2))
                await follow.read_until(5)  # new lines are printed as they come, not at exit
                await jl.claim(job.id)
                if ending == "complete":
                    await jl.ack(job.id)
                    await jl.complete(job.id)
                elif ending == "dead":
                    await jl.fail(job.id, "boom")  # maxRetries 0: dead
                else:
                    await jl.kill(job.id)
                assert await follow.exit_code() == expected, ending
                assert [line.rsplit(" ", 2)[-2:] for line in follow.lines[3:]] == [["new", "0"], ["new", "1"]]
    # A follow of a job that has ended already prints what is asked and exits at once with the same status.
    async with running(url, api_key, "logs", job.id, "-f", "--after", "11") as ended:
        assert await ended.exit_code() == 4 and [line.split()[-2:] for line in ended.lines] == [["new", "1"]]


async def test_follow_survives_a_restart_of_its_instance_with_no_gap_and_no_repeat(
    make_client: AppFactory, settings: Settings, admin: dict[str, str]
) -> None:
    writer = await make_client(**FAST)  # the appends go to another instance throughout
    instance = ServeProcess(settings)
    await instance.start()
    try:
        async with AsyncJoblens(base_url(writer), key_of(admin)) as jl:
            job = await jl.create_job("restarted")
            await jl.append_logs(job.id, lines("first", 200))
            async with running(instance.url, key_of(admin), "logs", job.id, "-f", "--after", "0", "-o", "json") as f:
                await f.read_until(200)
                appending = asyncio.create_task(append_batches(jl, job.id, 30))
                await f.read_until(400)
                await instance.kill()
                await asyncio.sleep(0.3)  # appends go on while the follower's instance is down
                await instance.start()
                await f.read_until(900)
                await instance.stop()  # SIGTERM: a reconnect event
                await instance.start()
                await appending
                await jl.claim(job.id)
                await jl.ack(job.id)
                await jl.complete(job.id)
                assert await f.exit_code() == 0
        total = 200 + 30 * 50
        assert [orjson.loads(line)["seq"] for line in f.lines] == list(range(1, total + 1))
    finally:
        await instance.kill()


async def append_batches(jl: AsyncJoblens, job_id: str, batches: int) -> None:
    for number in range(batches):
        await jl.append_logs(job_id, lines(f"batch {number}", 50))
        await asyncio.sleep(0.05)
