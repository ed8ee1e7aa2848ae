"""One Elasticsearch node: Java, the distribution (Maven Central), its config and user, start and readiness."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.errors import StackError
from devstack.ports import LOOPBACK
from devstack.processes import can_inspect, last_line, log_hint, pid_alive, proc_text, read_pidfile

ELASTICSEARCH_VERSION = "9.5.4"
ES_USER = "joblens-es"
ES_CLUSTER_NAME = "joblens-local"
ES_NODE_NAME = "joblens-local-1"
ES_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
MIN_JAVA_MAJOR = 21


@dataclass(frozen=True)
class EsPaths:
    """The files of one Elasticsearch node, under its dir (the distribution is unpacked in it too)."""

    dir: Path
    cluster_name: str = ES_CLUSTER_NAME  # names the node's log file

    @property
    def home(self) -> Path:
        return self.dir / f"elasticsearch-{ELASTICSEARCH_VERSION}"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def owned_dirs(self) -> tuple[Path, ...]:
        """Directories the Elasticsearch user must own (home holds config + keystore)."""
        return (self.home, self.data, self.logs, self.tmp, self.run)

    @property
    def pidfile(self) -> Path:
        return self.run / "elasticsearch.pid"

    @property
    def log(self) -> Path:
        return self.logs / f"{self.cluster_name}.log"

    @property
    def launcher_log(self) -> Path:
        return self.dir / "launcher.log"


def url(http_port: int) -> str:
    return f"http://{LOOPBACK}:{http_port}"


# --------------------------------------------------------------------------- java


def java_major(java_home: Path) -> int:
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
        if java_major(Path(override)) < MIN_JAVA_MAJOR:
            raise StackError(f"JOBLENS_ES_JAVA_HOME={override} is not a Java {MIN_JAVA_MAJOR}+ JDK")
        return Path(override)
    jvm_root = Path("/usr/lib/jvm")
    candidates = sorted(p for p in jvm_root.iterdir() if p.is_dir()) if jvm_root.is_dir() else []
    for home in candidates:
        if java_major(home) >= MIN_JAVA_MAJOR:
            return home
    raise StackError(
        f"Elasticsearch needs Java {MIN_JAVA_MAJOR}+: none found in /usr/lib/jvm; "
        f"install one (apt-get install openjdk-{MIN_JAVA_MAJOR}-jdk-headless) or set JOBLENS_ES_JAVA_HOME"
    )


# --------------------------------------------------------------------------- distribution


def maven_zip(repo: Path) -> Path:
    name = f"elasticsearch-{ELASTICSEARCH_VERSION}.zip"
    return repo / "org/elasticsearch/distribution/integ-test-zip/elasticsearch" / ELASTICSEARCH_VERSION / name


def fetch_zip() -> Path:
    """The distribution zip in the local Maven repo, fetched from Maven Central if missing."""
    repo = Path.home() / ".m2" / "repository"
    target = maven_zip(repo)
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
        raise StackError(f"mvn could not fetch {ES_ARTIFACT}: {last_line(done.stdout + done.stderr)}")
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


def unpack(node: EsPaths) -> None:
    """Unpack the distribution into the node's dir, atomically (via a temp dir + rename)."""
    if (node.home / "bin" / "elasticsearch").is_file():
        return
    archive_path = fetch_zip()
    staging = node.dir / ".unpack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                _extract_member(archive, info, staging)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StackError(f"could not unpack {archive_path}: {exc}") from exc
    unpacked = staging / node.home.name
    if not (unpacked / "bin" / "elasticsearch").is_file():
        raise StackError(f"{archive_path} has no {node.home.name}/bin/elasticsearch")
    shutil.rmtree(node.home, ignore_errors=True)
    unpacked.rename(node.home)
    shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- config and user


@dataclass(frozen=True)
class NodeRole:
    """Which cluster a node belongs to and how it finds the others: no seeds means a single-node cluster."""

    node_name: str = ES_NODE_NAME
    seed_transport_ports: tuple[int, ...] = ()
    initial_masters: tuple[str, ...] = ()  # the master-eligible nodes that bootstrap a new cluster


SINGLE_NODE = NodeRole()


def _discovery(node: EsPaths, role: NodeRole) -> dict[str, str]:
    if not role.seed_transport_ports:
        return {"discovery.type": "single-node"}
    seeds = ", ".join(f'"{LOOPBACK}:{port}"' for port in role.seed_transport_ports)
    settings = {"discovery.seed_hosts": f"[{seeds}]"}
    # Only to bootstrap: a node that already holds cluster state must not be told to form a new cluster again.
    if not (node.data / "_state").exists():
        settings["cluster.initial_master_nodes"] = "[" + ", ".join(f'"{name}"' for name in role.initial_masters) + "]"
    return settings


def config(node: EsPaths, http_port: int, transport_port: int, role: NodeRole = SINGLE_NODE) -> str:
    """The node's elasticsearch.yml."""
    settings = {
        "cluster.name": node.cluster_name,
        "node.name": role.node_name,
        "path.data": str(node.data),
        "path.logs": str(node.logs),
        "network.host": LOOPBACK,
        "http.port": str(http_port),
        "transport.port": str(transport_port),
        **_discovery(node, role),
        "xpack.security.enabled": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    return "".join(f"{key}: {value}\n" for key, value in settings.items())


def es_user() -> str | None:
    """The user to run Elasticsearch as: ES_USER (created if needed) when root, else None (us)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(ES_USER)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"could not create user {ES_USER}: {last_line(done.stderr)}") from None
    return ES_USER


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


def prepare(node: EsPaths, http_port: int, transport_port: int, user: str | None, role: NodeRole = SINGLE_NODE) -> None:
    """Unpack, start with fresh logs (data is kept: benchmark data survives restarts), write config."""
    unpack(node)
    shutil.rmtree(node.logs, ignore_errors=True)
    for directory in node.owned_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    node.dir.chmod(0o755)
    (node.home / "config" / "elasticsearch.yml").write_text(config(node, http_port, transport_port, role))
    if user is not None:
        for directory in node.owned_dirs:
            _chown_tree(directory, user)


# --------------------------------------------------------------------------- process


def command(node: EsPaths, java_home: Path, user: str | None) -> list[str]:
    """The daemonizing launch command, run as `user` (None: as us)."""
    heap = os.environ.get("JOBLENS_ES_HEAP", "512m")
    env = [
        f"ES_JAVA_HOME={java_home}",
        f"ES_JAVA_OPTS=-Xms{heap} -Xmx{heap}",
        f"ES_TMPDIR={node.tmp}",
        f"ES_PATH_CONF={node.home / 'config'}",
    ]
    launch = ["env", *env, str(node.home / "bin" / "elasticsearch"), "-d", "-p", str(node.pidfile)]
    if user is None:
        return launch
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *launch]
    return ["su", "-s", "/bin/bash", user, "-c", shlex.join(launch)]


def start(node: EsPaths, http_port: int, transport_port: int, deadline: float, role: NodeRole = SINGLE_NODE) -> int:
    """Prepare and launch the node (daemonized); returns its pid once the pidfile appears. The launcher returns
    once the node has joined its cluster (or given up waiting): start the nodes of a cluster side by side."""
    java_home = find_java_home()
    user = es_user()
    prepare(node, http_port, transport_port, user, role)
    node.pidfile.unlink(missing_ok=True)
    cmd = command(node, java_home, user)
    with node.launcher_log.open("w") as log:
        try:
            done = subprocess.run(
                cmd,
                cwd=node.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"Elasticsearch launcher timed out; {log_hint(node.launcher_log)}") from None
    if done.returncode != 0:
        raise StackError(f"Elasticsearch failed to start (exit {done.returncode}); {log_hint(node.launcher_log)}")
    return read_pidfile(node.pidfile, deadline)


def stray_pid(node: EsPaths) -> list[int]:
    """The pid in the node's pidfile if it is our node (a start that failed half-way), else []."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(node.pidfile.read_text().strip())
        if is_ours(pid, node):
            return [pid]
    return []


def ready(http_port: int) -> bool:
    """True once the cluster behind `http_port` is yellow or green."""
    health = f"http://{LOOPBACK}:{http_port}/_cluster/health?wait_for_status=yellow&timeout=1s"
    try:
        with urllib.request.urlopen(health, timeout=3.0) as response:
            body: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return body.get("status") in ("yellow", "green")


def is_ours(pid: int, node: EsPaths) -> bool:
    """True if `pid` is a live Elasticsearch running from this node's distribution."""
    if not pid_alive(pid):
        return False
    if not can_inspect():
        return True
    return str(node.home) in proc_text(pid, "cmdline")
