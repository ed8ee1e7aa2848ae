"""A local Redis + Elasticsearch stack for development and CI, without Docker.

Everything lives under one state directory (env ``JOBLENS_STACK_DIR``, default
``/var/tmp/joblens-stack``; it must be outside root's home because Elasticsearch
runs as an unprivileged user when we are root)::

    es/elasticsearch-<version>/   unpacked distribution (Maven Central integ-test-zip)
    es/data/  es/logs/  es/tmp/  es/run/elasticsearch.pid
    redis/                        Redis working dir, log and pidfile
    stack.json                    chosen ports and the pids this module started
    stack.lock                    serialises concurrent up/down calls

Ports are picked once (free loopback ports) and reused by later ``up`` calls.
``down`` stops exactly the pids recorded in ``stack.json``. Redis does not persist (tests
and development only); Elasticsearch keeps its data dir across restarts, so generated
benchmark data can be reused (tests use their own index prefixes and delete them).
Only the modules of the integ-test-zip distribution are present (no painless,
reindex/delete-by-query, data streams, ingest, mapper-extras, analysis-common).

CLI: ``add_stack_commands`` registers ``stack up|down|status|env`` on an argparse
parser; ``python -m service.stack up|down|status|env`` works standalone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ELASTICSEARCH_VERSION = "9.5.4"
ES_USER = "joblens-es"
ES_CLUSTER_NAME = "joblens-local"
ES_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
# Outside root's home on purpose: the unprivileged Elasticsearch user must read it.
DEFAULT_STATE_DIR = "/var/tmp/joblens-stack"  # noqa: S108
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
MIN_JAVA_MAJOR = 21
LOOPBACK = "127.0.0.1"


class StackError(Exception):
    """A stack operation failed; the message is one line, fit to show a user."""


@dataclass(frozen=True)
class StackInfo:
    """Connection URLs of a running stack."""

    redis_url: str
    elasticsearch_url: str


@dataclass
class Ports:
    redis: int = 0
    es_http: int = 0
    es_transport: int = 0


@dataclass
class Pids:
    redis: int = 0
    elasticsearch: int = 0


@dataclass
class State:
    ports: Ports = field(default_factory=Ports)
    pids: Pids = field(default_factory=Pids)


@dataclass(frozen=True)
class Paths:
    """Every file and directory the stack uses, derived from the state dir."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "stack.lock"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def redis_log(self) -> Path:
        return self.redis_dir / "redis.log"

    @property
    def es_dir(self) -> Path:
        return self.root / "es"

    @property
    def es_home(self) -> Path:
        return self.es_dir / f"elasticsearch-{ELASTICSEARCH_VERSION}"

    @property
    def es_owned_dirs(self) -> tuple[Path, ...]:
        """Directories the Elasticsearch user must own (home holds config + keystore)."""
        return (self.es_home, self.es_dir / "data", self.es_dir / "logs", self.es_dir / "tmp", self.es_run)

    @property
    def es_run(self) -> Path:
        return self.es_dir / "run"

    @property
    def es_pidfile(self) -> Path:
        return self.es_run / "elasticsearch.pid"

    @property
    def es_log(self) -> Path:
        return self.es_dir / "logs" / f"{ES_CLUSTER_NAME}.log"

    @property
    def es_launcher_log(self) -> Path:
        return self.es_dir / "launcher.log"


def _paths() -> Paths:
    return Paths(Path(os.environ.get("JOBLENS_STACK_DIR", DEFAULT_STATE_DIR)).resolve())


def redis_url(ports: Ports) -> str:
    return f"redis://{LOOPBACK}:{ports.redis}/0"


def elasticsearch_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.es_http}"


# --------------------------------------------------------------------------- state


def _load_state(paths: Paths) -> State:
    try:
        raw: dict[str, Any] = json.loads(paths.state_file.read_text())
        return State(ports=Ports(**raw.get("ports", {})), pids=Pids(**raw.get("pids", {})))
    except FileNotFoundError:
        return State()
    except (ValueError, TypeError) as exc:
        raise StackError(f"corrupt {paths.state_file}: {exc}; remove it after stopping the stack") from exc


def _save_state(paths: Paths, state: State) -> None:
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(paths.state_file)


@contextlib.contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """Hold an exclusive lock on the state dir (created world-traversable if missing)."""
    try:
        if not paths.root.is_dir():
            paths.root.mkdir(parents=True)
            paths.root.chmod(0o755)
        handle = paths.lock_file.open("a")
    except PermissionError as exc:
        raise StackError(f"no access to {paths.root} ({exc.strerror}); set JOBLENS_STACK_DIR") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_text(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _is_our_redis(pid: int, paths: Paths) -> bool:
    if not _pid_alive(pid):
        return False
    if not Path("/proc").is_dir():
        return True
    cwd = _proc_cwd(pid)
    return _proc_text(pid, "comm").startswith("redis-server") and cwd in ("", str(paths.redis_dir))


def _is_our_es(pid: int, paths: Paths) -> bool:
    if not _pid_alive(pid):
        return False
    if not Path("/proc").is_dir():
        return True
    return str(paths.es_home) in _proc_text(pid, "cmdline")


def _read_pidfile(path: Path, deadline: float) -> int:
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
        if time.monotonic() > deadline:
            raise StackError(f"pidfile {path} did not appear")
        time.sleep(0.1)


def _stop_pids(pids: list[int]) -> None:
    """SIGTERM the pids, wait up to STOP_TIMEOUT_S, then SIGKILL the survivors."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- ports


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """True if nothing listens on the port (TIME_WAIT leftovers don't count, as for the servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _usable(port: int, taken: set[int]) -> int:
    """Return `port` if it is set, unclaimed and free; otherwise a new free port."""
    if port > 0 and port not in taken and _port_free(port):
        return port
    while True:
        candidate = _free_port()
        if candidate not in taken:
            return candidate


def _choose_ports(ports: Ports, redis_running: bool, es_running: bool) -> Ports:
    """Keep the ports of running parts; re-check the rest and replace any taken by others."""
    redis = ports.redis if redis_running else 0
    http = ports.es_http if es_running else 0
    transport = ports.es_transport if es_running else 0
    if not redis_running:
        redis = _usable(ports.redis, {http, transport})
    if not es_running:
        http = _usable(ports.es_http, {redis})
        transport = _usable(ports.es_transport, {redis, http})
    return Ports(redis=redis, es_http=http, es_transport=transport)


# --------------------------------------------------------------------------- redis


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    _apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("redis-server still not on PATH after installing the Debian package")
    return found


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"{package} is missing; install it (Debian: sudo apt-get install -y {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed: {_last_line(done.stderr or done.stdout)}")


def _start_redis(paths: Paths, port: int, deadline: float) -> int:
    paths.redis_dir.mkdir(parents=True, exist_ok=True)
    paths.redis_pidfile.unlink(missing_ok=True)
    paths.redis_log.write_text("")
    options = {
        "port": str(port),
        "bind": LOOPBACK,
        "save": "",
        "appendonly": "no",
        "daemonize": "yes",
        "pidfile": str(paths.redis_pidfile),
        "dir": str(paths.redis_dir),
        "logfile": str(paths.redis_log),
    }
    cmd = [_redis_binary(), *(arg for key, value in options.items() for arg in (f"--{key}", value))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"redis-server failed to start: {_last_line(done.stderr or done.stdout)}")
    try:
        return _read_pidfile(paths.redis_pidfile, min(deadline, time.monotonic() + 10.0))
    except StackError:
        raise StackError(f"redis-server did not start; {_log_hint(paths.redis_log)}") from None


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --------------------------------------------------------------------------- elasticsearch: files


def _java_major(java_home: Path) -> int:
    """Major version of the JDK at `java_home`, 0 if it is not a usable JDK."""
    java = java_home / "bin" / "java"
    if not os.access(java, os.X_OK):
        return 0
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java_home() -> Path:
    """JOBLENS_ES_JAVA_HOME, else the first JDK under /usr/lib/jvm with major >= 21."""
    override = os.environ.get("JOBLENS_ES_JAVA_HOME")
    if override:
        if _java_major(Path(override)) < MIN_JAVA_MAJOR:
            raise StackError(f"JOBLENS_ES_JAVA_HOME={override} is not a Java {MIN_JAVA_MAJOR}+ JDK")
        return Path(override)
    jvm_root = Path("/usr/lib/jvm")
    candidates = sorted(p for p in jvm_root.iterdir() if p.is_dir()) if jvm_root.is_dir() else []
    for home in candidates:
        if _java_major(home) >= MIN_JAVA_MAJOR:
            return home
    raise StackError(
        f"Elasticsearch needs Java {MIN_JAVA_MAJOR}+: none found in /usr/lib/jvm; "
        f"install one (apt-get install openjdk-{MIN_JAVA_MAJOR}-jdk-headless) or set JOBLENS_ES_JAVA_HOME"
    )


def _maven_zip(repo: Path) -> Path:
    name = f"elasticsearch-{ELASTICSEARCH_VERSION}.zip"
    return repo / "org/elasticsearch/distribution/integ-test-zip/elasticsearch" / ELASTICSEARCH_VERSION / name


def _fetch_zip() -> Path:
    """The distribution zip in the local Maven repo, fetched from Maven Central if missing."""
    repo = Path.home() / ".m2" / "repository"
    target = _maven_zip(repo)
    if target.is_file():
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("mvn not found: needed once to fetch Elasticsearch (Debian: apt-get install -y maven)")
    cmd = [
        mvn,
        "-q",
        "-B",
        "-U",
        f"-Dmaven.repo.local={repo}",
        "dependency:get",
        f"-Dartifact={ES_ARTIFACT}",
        "-Dtransitive=false",
    ]
    print(f"fetching Elasticsearch {ELASTICSEARCH_VERSION} from Maven Central ...", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.is_file():
        raise StackError(f"mvn could not fetch {ES_ARTIFACT}: {_last_line(done.stdout + done.stderr)}")
    return target


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Extract one member, keeping its unix mode bits (zipfile drops them)."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        link = dest / info.filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(archive.read(info).decode())
        return
    extracted = Path(archive.extract(info, dest))
    if mode & 0o777:
        extracted.chmod(mode & 0o777 | (0o755 if info.is_dir() else 0o644))


def _unpack_es(paths: Paths) -> None:
    """Unpack the distribution into es/, atomically (via a temp dir + rename)."""
    if (paths.es_home / "bin" / "elasticsearch").is_file():
        return
    archive_path = _fetch_zip()
    staging = paths.es_dir / ".unpack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                _extract_member(archive, info, staging)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StackError(f"could not unpack {archive_path}: {exc}") from exc
    unpacked = staging / paths.es_home.name
    if not (unpacked / "bin" / "elasticsearch").is_file():
        raise StackError(f"{archive_path} has no {paths.es_home.name}/bin/elasticsearch")
    shutil.rmtree(paths.es_home, ignore_errors=True)
    unpacked.rename(paths.es_home)
    shutil.rmtree(staging, ignore_errors=True)


def _es_config(paths: Paths, ports: Ports) -> str:
    settings = {
        "cluster.name": ES_CLUSTER_NAME,
        "node.name": "joblens-local-1",
        "path.data": str(paths.es_dir / "data"),
        "path.logs": str(paths.es_dir / "logs"),
        "network.host": LOOPBACK,
        "http.port": str(ports.es_http),
        "transport.port": str(ports.es_transport),
        "discovery.type": "single-node",
        "xpack.security.enabled": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    return "".join(f"{key}: {value}\n" for key, value in settings.items())


def _es_user() -> str | None:
    """The user to run Elasticsearch as: ES_USER (created if needed) when root, else None (us)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(ES_USER)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"could not create user {ES_USER}: {_last_line(done.stderr)}") from None
    return ES_USER


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


def _prepare_es(paths: Paths, ports: Ports, user: str | None) -> None:
    """Unpack, start with fresh logs (data is kept: benchmark data survives restarts), write config."""
    _unpack_es(paths)
    shutil.rmtree(paths.es_dir / "logs", ignore_errors=True)
    for directory in paths.es_owned_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    paths.es_dir.chmod(0o755)
    (paths.es_home / "config" / "elasticsearch.yml").write_text(_es_config(paths, ports))
    if user is not None:
        for directory in paths.es_owned_dirs:
            _chown_tree(directory, user)


# --------------------------------------------------------------------------- elasticsearch: process


def _es_command(paths: Paths, java_home: Path, user: str | None) -> list[str]:
    heap = os.environ.get("JOBLENS_ES_HEAP", "512m")
    env = [
        f"ES_JAVA_HOME={java_home}",
        f"ES_JAVA_OPTS=-Xms{heap} -Xmx{heap}",
        f"ES_TMPDIR={paths.es_dir / 'tmp'}",
        f"ES_PATH_CONF={paths.es_home / 'config'}",
    ]
    launch = ["env", *env, str(paths.es_home / "bin" / "elasticsearch"), "-d", "-p", str(paths.es_pidfile)]
    if user is None:
        return launch
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *launch]
    return ["su", "-s", "/bin/bash", user, "-c", shlex.join(launch)]


def _start_es(paths: Paths, ports: Ports, deadline: float) -> int:
    java_home = find_java_home()
    user = _es_user()
    _prepare_es(paths, ports, user)
    paths.es_pidfile.unlink(missing_ok=True)
    cmd = _es_command(paths, java_home, user)
    with paths.es_launcher_log.open("w") as log:
        try:
            done = subprocess.run(
                cmd,
                cwd=paths.es_home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"Elasticsearch launcher timed out; {_log_hint(paths.es_launcher_log)}") from None
    if done.returncode != 0:
        raise StackError(f"Elasticsearch failed to start (exit {done.returncode}); {_log_hint(paths.es_launcher_log)}")
    return _read_pidfile(paths.es_pidfile, deadline)


def _stray_es_pid(paths: Paths) -> list[int]:
    """The pid in the ES pidfile if it is our node (a start that failed half-way), else []."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(paths.es_pidfile.read_text().strip())
        if _is_our_es(pid, paths):
            return [pid]
    return []


def _es_ready(port: int) -> bool:
    url = f"http://{LOOPBACK}:{port}/_cluster/health?wait_for_status=yellow&timeout=1s"
    try:
        with urllib.request.urlopen(url, timeout=3.0) as response:
            body: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return body.get("status") in ("yellow", "green")


def _tail(path: Path, lines: int = 6) -> str:
    """The last meaningful lines of a log (stack frames dropped), joined into one line."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    kept = [line.strip()[:300] for line in text if line.strip() and not line.strip().startswith(("at ", "..."))]
    return " | ".join(kept[-lines:])


def _log_hint(path: Path) -> str:
    return f"see {path}: {_tail(path) or '(empty)'}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# --------------------------------------------------------------------------- readiness


def _wait_ready(paths: Paths, state: State, deadline: float) -> None:
    checks: list[tuple[str, Callable[[], bool], Callable[[], bool]]] = [
        ("Redis", lambda: _redis_ready(state.ports.redis), lambda: _is_our_redis(state.pids.redis, paths)),
        (
            "Elasticsearch",
            lambda: _es_ready(state.ports.es_http),
            lambda: _is_our_es(state.pids.elasticsearch, paths),
        ),
    ]
    for name, ready, alive in checks:
        while not ready():
            hint = _log_hint(paths.es_log if name == "Elasticsearch" else paths.redis_log)
            if not alive():
                raise StackError(f"{name} exited during startup; {hint}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s; {hint}")
            time.sleep(0.5)


# --------------------------------------------------------------------------- public API


def up() -> tuple[StackInfo, bool]:
    """Start whatever part of the stack is not running and wait until both are ready.

    Returns the URLs and whether this call started anything. On failure, stops
    what this call started and raises StackError.
    """
    paths = _paths()
    with _locked(paths):
        deadline = time.monotonic() + READY_TIMEOUT_S
        state = _load_state(paths)
        redis_running = _is_our_redis(state.pids.redis, paths)
        es_running = _is_our_es(state.pids.elasticsearch, paths)
        state.ports = _choose_ports(state.ports, redis_running, es_running)
        started: list[int] = []
        try:
            if not redis_running:
                state.pids.redis = _start_redis(paths, state.ports.redis, deadline)
                started.append(state.pids.redis)
                _save_state(paths, state)
            if not es_running:
                state.pids.elasticsearch = _start_es(paths, state.ports, deadline)
                started.append(state.pids.elasticsearch)
            _save_state(paths, state)
            _wait_ready(paths, state, deadline)
        except BaseException:
            _stop_pids(started if es_running else [*started, *_stray_es_pid(paths)])
            raise
        return StackInfo(redis_url(state.ports), elasticsearch_url(state.ports)), bool(started)


def down() -> None:
    """Stop the processes that `up` started (SIGTERM, then SIGKILL after 30 s)."""
    paths = _paths()
    if not paths.state_file.exists():
        return
    with _locked(paths):
        state = _load_state(paths)
        ours = [
            pid
            for pid, is_ours in (
                (state.pids.redis, _is_our_redis(state.pids.redis, paths)),
                (state.pids.elasticsearch, _is_our_es(state.pids.elasticsearch, paths)),
            )
            if is_ours
        ]
        try:
            _stop_pids(ours)
        except PermissionError as exc:
            raise StackError(f"not allowed to stop the stack ({exc.strerror}); run as its owner") from exc
        state.pids = Pids()
        _save_state(paths, state)


def kill_elasticsearch() -> None:
    """SIGKILL the stack's Elasticsearch (fault-injection tests); ``up`` starts it again on the same ports."""
    paths = _paths()
    with _locked(paths):
        state = _load_state(paths)
        if _is_our_es(state.pids.elasticsearch, paths):
            os.kill(state.pids.elasticsearch, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while _pid_alive(state.pids.elasticsearch) and time.monotonic() < deadline:
                time.sleep(0.05)


def status() -> dict[str, str]:
    """Each part's state: "running at URL" or "stopped"."""
    paths = _paths()
    state = _load_state(paths)
    redis_up = _is_our_redis(state.pids.redis, paths)
    es_up = _is_our_es(state.pids.elasticsearch, paths)
    return {
        "redis": f"running at {redis_url(state.ports)}" if redis_up else "stopped",
        "elasticsearch": f"running at {elasticsearch_url(state.ports)}" if es_up else "stopped",
    }


def info() -> StackInfo | None:
    """URLs of the running stack, or None unless both parts are running."""
    paths = _paths()
    state = _load_state(paths)
    if _is_our_redis(state.pids.redis, paths) and _is_our_es(state.pids.elasticsearch, paths):
        return StackInfo(redis_url(state.ports), elasticsearch_url(state.ports))
    return None


# --------------------------------------------------------------------------- CLI


def _env_lines(stack: StackInfo) -> str:
    return f"export JOBLENS_REDIS_URL={stack.redis_url}\nexport JOBLENS_ELASTICSEARCH_URL={stack.elasticsearch_url}"


def _cmd_up(args: argparse.Namespace) -> int:
    stack, started = up()
    if args.env:
        print(_env_lines(stack))
        print(f"export JOBLENS_STACK_STARTED={int(started)}")
        return 0
    print(f"redis: {stack.redis_url}")
    print(f"elasticsearch: {stack.elasticsearch_url}")
    print("started" if started else "already running", file=sys.stderr)
    return 0


def _cmd_down(_args: argparse.Namespace) -> int:
    down()
    print("stack stopped", file=sys.stderr)
    return 0


def _cmd_status(_args: argparse.Namespace) -> int:
    for part, state in status().items():
        print(f"{part}: {state}")
    return 0


def _cmd_env(_args: argparse.Namespace) -> int:
    stack = info()
    if stack is None:
        raise StackError("the stack is not running; start it with `joblens stack up`")
    print(_env_lines(stack))
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn StackError into its message on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StackError as exc:
            print(f"joblens stack: {exc}", file=sys.stderr)
            return 1

    return run


def add_stack_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `stack up|down|status|env`; each sets `run(args) -> int` (the exit code)."""
    stack = subparsers.add_parser("stack", help="local Redis + Elasticsearch (no Docker)")
    commands = stack.add_subparsers(dest="stack_command", required=True, metavar="{up,down,status,env}")
    up_parser = commands.add_parser("up", help="start the stack (idempotent) and print its URLs")
    up_parser.add_argument("--env", action="store_true", help="print shell `export` lines instead")
    up_parser.set_defaults(run=_guarded(_cmd_up))
    commands.add_parser("down", help="stop what `up` started").set_defaults(run=_guarded(_cmd_down))
    commands.add_parser("status", help="show each part's state").set_defaults(run=_guarded(_cmd_status))
    commands.add_parser("env", help="print `export JOBLENS_*_URL=...` lines").set_defaults(run=_guarded(_cmd_env))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m service.stack up|down|status|env`."""
    parser = argparse.ArgumentParser(prog="python -m service.stack")
    add_stack_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stack", *(sys.argv[1:] if argv is None else argv)])
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
