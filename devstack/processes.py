"""Processes of the stack: pid checks, pidfiles, stopping pids, and log tails for error messages."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from devstack.errors import StackError

STOP_TIMEOUT_S = 30.0


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def can_inspect() -> bool:
    """True if /proc is there, so a pid's command line and cwd can be checked."""
    return Path("/proc").is_dir()


def proc_text(pid: int, name: str) -> str:
    """/proc/<pid>/<name> as text (NULs as spaces), "" if unreadable."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def proc_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def read_pidfile(path: Path, deadline: float) -> int:
    """The pid in `path`, waiting (until `deadline`, monotonic) for it to appear."""
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
        if time.monotonic() > deadline:
            raise StackError(f"pidfile {path} did not appear")
        time.sleep(0.1)


def stop_pids(pids: list[int], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the pids, wait up to `timeout_s`, then SIGKILL the survivors."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 6) -> str:
    """The last meaningful lines of a log (stack frames dropped), joined into one line."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    kept = [line.strip()[:300] for line in text if line.strip() and not line.strip().startswith(("at ", "..."))]
    return " | ".join(kept[-lines:])


def log_hint(path: Path) -> str:
    return f"see {path}: {tail(path) or '(empty)'}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
