"""One redis-server node: installing the binary if missing, starting it, probing it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.ports import LOOPBACK
from devstack.processes import can_inspect, last_line, log_hint, pid_alive, proc_cwd, proc_text, read_pidfile


@dataclass(frozen=True)
class RedisPaths:
    """The files of one Redis node: its working dir holds its log and pidfile."""

    dir: Path

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"


def url(port: int) -> str:
    return f"redis://{LOOPBACK}:{port}/0"


def redis_binary() -> str:
    """redis-server on PATH, installed from the Debian package first (when root) if missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("redis-server still not on PATH after installing the Debian package")
    return found


def apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"{package} is missing; install it (Debian: sudo apt-get install -y {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed: {last_line(done.stderr or done.stdout)}")


def start(node: RedisPaths, port: int, deadline: float, extra: dict[str, str] | None = None) -> int:
    """Start a daemonized, non-persisting redis-server on `port` (``extra``: more options, e.g. cluster mode);
    returns its pid."""
    node.dir.mkdir(parents=True, exist_ok=True)
    node.pidfile.unlink(missing_ok=True)
    node.log.write_text("")
    options = {
        "port": str(port),
        "bind": LOOPBACK,
        "save": "",
        "appendonly": "no",
        "daemonize": "yes",
        "pidfile": str(node.pidfile),
        "dir": str(node.dir),
        "logfile": str(node.log),
        **(extra or {}),
    }
    cmd = [redis_binary(), *(arg for key, value in options.items() for arg in (f"--{key}", value))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"redis-server failed to start: {last_line(done.stderr or done.stdout)}")
    try:
        return read_pidfile(node.pidfile, min(deadline, time.monotonic() + 10.0))
    except StackError:
        raise StackError(f"redis-server did not start; {log_hint(node.log)}") from None


def ready(port: int) -> bool:
    """True if the server on `port` answers PING."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def is_ours(pid: int, node: RedisPaths) -> bool:
    """True if `pid` is a live redis-server working in this node's dir."""
    if not pid_alive(pid):
        return False
    if not can_inspect():
        return True
    cwd = proc_cwd(pid)
    return proc_text(pid, "comm").startswith("redis-server") and cwd in ("", str(node.dir))
