"""The processes a run starts: the service (``joblens serve``) and the bare aiohttp app, on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from devstack.ports import free_port

LOOPBACK = "127.0.0.1"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def rss_mib(self) -> float:
        """Resident set size now (from /proc/<pid>/statm)."""
        fields = Path(f"/proc/{self.popen.pid}/statm").read_text().split()
        return int(fields[1]) * PAGE_SIZE / 2**20

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far."""
        return _cpu_s(self.popen.pid)

    def tree_cpu_s(self) -> float:
        """`cpu_s` of the process and of its children now (a supervisor's workers; one that exited is not counted)."""
        pid = self.popen.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return _cpu_s(pid) + sum(_cpu_s(int(child)) for child in children)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting; `stop` waits."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds of the whole machine so far, summed over its cores: (busy, busy + idle), from /proc/stat."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS, sum(ticks[:8]) / CLOCK_TICKS


def _spawn(name: str, command: list[str], env: dict[str, str], port: int, log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return Proc(name, popen, port, log_path)


def joblens_command() -> list[str]:
    script = Path(sys.executable).parent / "joblens"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


def start_service(name: str, env_overrides: dict[str, str], log_dir: Path, workers: int = 1) -> Proc:
    """``joblens serve --port P --workers N`` with the ``JOBLENS_*`` environment of this run plus ``env_overrides``.

    One worker unless asked (``serve`` runs one per core by default): the rows compare one process with its
    baseline, and `Proc.rss_mib` / `cpu_s` and the profiler read that one process. With more, the process is the
    supervisor; `wait_logged` waits for its line saying every worker listens."""
    port = free_port()
    env = {**os.environ, "JOBLENS_HOST": LOOPBACK, **env_overrides}
    command = [*joblens_command(), "serve", "--port", str(port), "--workers", str(workers)]
    return _spawn(name, command, env, port, log_dir)


def start_bare(bodies_file: Path, log_dir: Path, es_url: str) -> Proc:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--port", str(port), "--bodies", str(bodies_file), "--es", es_url]
    return _spawn("bare", command, dict(os.environ), port, log_dir)


async def wait_logged(proc: Proc, text: str, timeout_s: float = 60.0) -> None:
    """Until the process log holds ``text``; raises with the end of the log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.popen.poll() is None:
        if text in proc.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.1)
    tail = proc.log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{proc.name} did not log {text!r}:\n{tail}")


async def wait_http(proc: Proc, path: str, timeout_s: float = 60.0) -> None:
    """Until ``GET path`` answers 200; raises with the end of the process log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                break
            try:
                async with session.get(proc.base_url + path, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    tail = proc.log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{proc.name} did not become ready on port {proc.port}:\n{tail}")
