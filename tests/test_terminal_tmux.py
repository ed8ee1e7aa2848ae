"""The terminal client on a real terminal: run in tmux (a private tmux server of the test's own), the screen read
back with ``capture-pane``. Levels are coloured on a terminal and not with NO_COLOR; ``progress --watch`` draws
its bars in place and redraws them as progress moves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

from joblens_client import AsyncJoblens
from tests.client_helpers import base_url, key_of, terminal_env
from tests.helpers import JOBLENS, AppFactory, eventually

FAST = {"stream_poll_interval_s": 0.2, "stream_quiet_period_s": 0.3}
EXIT_MARK = "exit status "


class Tmux:
    """A tmux server of this test only (its own socket and an empty config, so nothing of a user's tmux is
    touched), with one window running one command."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.socket = f"jl-test-{secrets.token_hex(4)}"
        self.config = tmp_path / "tmux.conf"
        self.config.write_text("set -g history-limit 1000\n")
        # The server's environment is the first client's: the key reaches the command without a command line.
        path = os.environ.get("PATH", "/usr/bin:/bin")
        self.env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8", "TERM": "xterm-256color", **env}

    async def run(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            "-f",
            str(self.config),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()
        return stdout.decode()

    async def start(self, command: list[str]) -> None:
        # the shell prints the status, then keeps the pane open (a dead pane's screen is not kept reliably)
        shell = f'{shlex.join(command)}; echo "{EXIT_MARK}$?"; sleep 600'
        await self.run("new-session", "-d", "-s", "t", "-x", "150", "-y", "40", shell)

    async def screen(self, escapes: bool = False) -> str:
        """What the pane shows; with ``escapes``, its colours and attributes as escape sequences."""
        return await self.run("capture-pane", "-p", "-t", "t", *(["-e"] if escapes else []))

    async def shows(self, text: str, within_s: float = 20) -> str:
        async def check() -> bool:
            return text in await self.screen()

        await eventually(check, f"{text!r} on the screen", within_s)
        return await self.screen()

    async def exited(self) -> int:
        """The command's exit status, once it exited (`start` has the shell print it)."""
        shown = await self.shows(EXIT_MARK)
        return int(shown.split(EXIT_MARK, 1)[1].split()[0])

    async def stop(self) -> None:
        with contextlib.suppress(AssertionError):
            await self.run("kill-server")


@contextlib.asynccontextmanager
async def tmux(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Tmux]:
    terminal = Tmux(tmp_path, env)
    try:
        yield terminal
    finally:
        await terminal.stop()


async def test_follow_on_a_terminal_colours_levels_unless_no_color(
    make_client: AppFactory, admin: dict[str, str], tmp_path: Path
) -> None:
    server = await make_client(**FAST)
    url, api_key = base_url(server), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl:
        for no_color in ("", "1"):
            job = await jl.create_job("on-screen")
            env = terminal_env(url, api_key) | ({"NO_COLOR": no_color} if no_color else {})
            async with tmux(tmp_path, env) as screen:
                await screen.start([str(JOBLENS), "logs", job.id, "-f"])
                levels = ("info", "warn", "error", "fatal")
                await jl.append_logs(job.id, [{"message": f"a {level} line", "level": level} for level in levels])
                plain = await screen.shows("a fatal line")
                rows = [row for row in plain.splitlines() if row.endswith(" line")]
                assert [row.split(" ", 1)[1] for row in rows] == [
                    "INFO  a info line",
                    "WARN  a warn line",
                    "ERROR a error line",
                    "FATAL a fatal line",
                ]
                coloured = await screen.screen(escapes=True)
                error_row = next(row for row in coloured.splitlines() if "a error line" in row)
                if no_color:
                    assert "\x1b[" not in coloured  # not one colour or attribute on the whole screen
                else:
                    assert "\x1b[31mERROR" in error_row  # red
                    fatal_row = next(row for row in coloured.splitlines() if "a fatal line" in row)
                    assert "41m" in fatal_row  # on a red background
                await jl.kill(job.id)
                assert await screen.exited() == 4  # killed


async def test_progress_watch_draws_bars_in_place(
    make_client: AppFactory, admin: dict[str, str], tmp_path: Path
) -> None:
    server = await make_client()
    url, api_key = base_url(server), key_of(admin)
    async with AsyncJoblens(url, api_key) as jl, tmux(tmp_path, terminal_env(url, api_key)) as screen:
        job = await jl.create_job("watched")
        await jl.claim(job.id)
        await jl.ack(job.id)
        await jl.report_progress(job.id, 40, "resizing", {"download": 100, "scale": 20})
        await screen.start([str(JOBLENS), "progress", job.id, "--watch", "--interval", "0.1"])
        drawn = await screen.shows("40%")
        bar_of = {
            percent: "█" * (40 * percent // 100) + "░" * (40 - 40 * percent // 100) for percent in (20, 40, 80, 100)
        }
        rows = [row.rstrip() for row in drawn.splitlines() if row.strip()]
        assert rows == [
            f"running    [{bar_of[40]}]   40%  resizing",
            f"  download [{bar_of[100]}]  100%",
            f"  scale    [{bar_of[20]}]   20%",
        ]
        await jl.report_progress(job.id, 80, "almost", {"download": 100, "scale": 80})
        redrawn = await screen.shows("80%  almost")
        rows = [row.rstrip() for row in redrawn.splitlines() if row.strip()][:3]
        assert rows == [  # in place: the old bars are gone, not scrolled up
            f"running    [{bar_of[80]}]   80%  almost",
            f"  download [{bar_of[100]}]  100%",
            f"  scale    [{bar_of[80]}]   80%",
        ]
        await jl.complete(job.id)
        assert await screen.exited() == 0
        final = await screen.screen()
        assert final.splitlines()[0].startswith("completed  ["), final
