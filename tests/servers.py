"""Private, throwaway server processes for tests that stop or restart a dependency."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from devstack import elasticsearch
from devstack.paths import load_state, locked, stack_paths
from devstack.ports import free_port
from devstack.processes import pid_alive


def kill_elasticsearch() -> None:
    """SIGKILL the local stack's Elasticsearch (``JOBLENS_STACK_DIR``); ``up`` starts it again on the same ports."""
    paths = stack_paths()
    with locked(paths):
        pid = load_state(paths).pids.elasticsearch
        if elasticsearch.is_ours(pid, paths.es):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


class RedisProcess:
    """A real redis-server on a free loopback port; it restarts on the same port and folder."""

    def __init__(self, workdir: Path, *, durable: bool = False) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make setup installs it)"
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        # durable: every write is fsynced to the append-only file, so a SIGKILL loses nothing acknowledged
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
