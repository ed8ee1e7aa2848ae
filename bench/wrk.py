"""wrk (Debian's package) for the fixed-duration throughput runs of P4; installed with apt-get when root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    requests: int
    errors: int  # socket errors + non-2xx
    p50_ms: float
    p99_ms: float


def ensure_wrk() -> str | None:
    """The wrk binary, installing Debian's package if missing and possible; None otherwise."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", "wrk"]
    done = subprocess.run(command, env=env, capture_output=True, check=False, timeout=300)
    if done.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False, timeout=300)
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=300)
    return shutil.which("wrk")


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=10)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "unknown"


def run(binary: str, url: str, headers: dict[str, str], seconds: float, connections: int) -> WrkResult:
    command = [binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=False, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


def parse(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(float(rps.group(1)), int(total.group(1)), errors, _latency(output, "50%"), _latency(output, "99%"))


def _latency(output: str, label: str) -> float:
    found = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    return float(found.group(1)) * UNITS_MS[found.group(2)] if found else float("nan")
