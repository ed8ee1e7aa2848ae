"""The local cluster stack (``joblens stack up --cluster``): a Redis Cluster of 3 primaries with one replica each,
and a 3-node Elasticsearch cluster, beside the single-node stack and on loopback only.

Everything lives under ``<state dir>/cluster/`` (the state dir of `devstack.paths`)::

    redis-<n>/        n = 1…6: the node's working dir (nodes.conf, log, pidfile)
    es-<n>/           n = 1…3: the node's own unpacked distribution, data, logs and config
    cluster.json      chosen ports and the pids this module started
    cluster.lock      serialises concurrent up/down calls

Redis nodes run Debian's ``redis-server`` in cluster mode, without persistence (a development and test stack),
and are joined once by ``redis-cli --cluster create``; later ``up`` calls restart stopped nodes on their recorded
ports, and they rejoin from their ``nodes.conf``. ``cluster-node-timeout`` is short (loopback: a node that does
not answer for that long is dead) so that a replica takes over within a few seconds; ``cluster-require-full-
coverage no`` keeps the healthy shards serving while one has no primary.

Elasticsearch nodes are all master-eligible data nodes with explicit ``discovery.seed_hosts`` and, only for the
first start, ``cluster.initial_master_nodes``; their heap is ``JOBLENS_ES_HEAP`` (512m) each.

``CLUSTER_NODE_TIMEOUT_MS`` (env ``JOBLENS_REDIS_CLUSTER_NODE_TIMEOUT_MS``) lets a test's private cluster fail over
faster than the shared one, which must not fail over just because the machine is busy.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack import elasticsearch, redis
from devstack.elasticsearch import EsPaths, NodeRole
from devstack.errors import StackError
from devstack.paths import locked, stack_paths
from devstack.ports import LOOPBACK, port_free, usable_port
from devstack.processes import last_line, log_hint, stop_pids
from devstack.redis import RedisPaths

REDIS_PRIMARIES = 3
REDIS_REPLICAS_PER_PRIMARY = 1
REDIS_NODES = REDIS_PRIMARIES * (1 + REDIS_REPLICAS_PER_PRIMARY)
ES_NODES = 3
ES_CLUSTER_NAME = "joblens-cluster"
DEFAULT_NODE_TIMEOUT_MS = 3000
READY_TIMEOUT_S = 180.0


@dataclass
class ClusterState:
    """Ports and pids of every node (recorded in cluster.json); index i is node i + 1."""

    redis_ports: list[int] = field(default_factory=list)
    redis_bus_ports: list[int] = field(default_factory=list)  # the cluster bus of each node (its own free port)
    redis_pids: list[int] = field(default_factory=list)
    es_http_ports: list[int] = field(default_factory=list)
    es_transport_ports: list[int] = field(default_factory=list)
    es_pids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterInfo:
    """What points the service at the cluster: the seed nodes of each store."""

    redis_url: str  # redis+cluster://host:port,host:port,…
    elasticsearch_url: str  # comma-separated node URLs

    @property
    def elasticsearch_urls(self) -> tuple[str, ...]:
        return tuple(self.elasticsearch_url.split(","))


@dataclass(frozen=True)
class ClusterPaths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "cluster.lock"

    def redis(self, number: int) -> RedisPaths:
        return RedisPaths(self.root / f"redis-{number}")

    def es(self, number: int) -> EsPaths:
        return EsPaths(self.root / f"es-{number}", cluster_name=ES_CLUSTER_NAME)


def cluster_paths() -> ClusterPaths:
    return ClusterPaths(stack_paths().root / "cluster")


def node_timeout_ms() -> int:
    return int(os.environ.get("JOBLENS_REDIS_CLUSTER_NODE_TIMEOUT_MS", DEFAULT_NODE_TIMEOUT_MS))


def load(paths: ClusterPaths) -> ClusterState:
    try:
        return ClusterState(**json.loads(paths.state_file.read_text()))
    except FileNotFoundError:
        return ClusterState()
    except (ValueError, TypeError) as exc:
        raise StackError(f"corrupt {paths.state_file}: {exc}; remove it after stopping the cluster") from exc


def save(paths: ClusterPaths, state: ClusterState) -> None:
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(paths.state_file)


def info_of(state: ClusterState) -> ClusterInfo:
    seeds = ",".join(f"{LOOPBACK}:{port}" for port in state.redis_ports)
    return ClusterInfo(f"redis+cluster://{seeds}", ",".join(elasticsearch.url(p) for p in state.es_http_ports))


# --------------------------------------------------------------------------- Redis Cluster


def _redis_options(bus_port: int) -> dict[str, str]:
    return {
        "cluster-enabled": "yes",
        # Not the default (port + 10000): that may be taken, or above 65535.
        "cluster-port": str(bus_port),
        "cluster-config-file": "nodes.conf",  # in the node's working dir
        "cluster-node-timeout": str(node_timeout_ms()),
        "cluster-require-full-coverage": "no",
    }


def redis_running(paths: ClusterPaths, state: ClusterState, number: int) -> bool:
    pids = state.redis_pids
    return number <= len(pids) and redis.is_ours(pids[number - 1], paths.redis(number))


def _redis_command(port: int, *args: str) -> str:
    """One command through redis-cli (the tool the cluster is created with) and its plain-text answer."""
    done = subprocess.run(
        ["redis-cli", "-h", LOOPBACK, "-p", str(port), *args], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise StackError(f"redis-cli {' '.join(args)} on port {port}: {last_line(done.stderr or done.stdout)}")
    return done.stdout


def redis_cluster_ok(port: int) -> bool:
    """True when the node on ``port`` reports ``cluster_state:ok`` with every slot served."""
    try:
        answer = _redis_command(port, "CLUSTER", "INFO")
    except (StackError, OSError, subprocess.TimeoutExpired):
        return False
    return "cluster_state:ok" in answer and "cluster_slots_ok:16384" in answer


def _create_redis_cluster(ports: list[int]) -> None:
    nodes = [f"{LOOPBACK}:{port}" for port in ports]
    cmd = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", str(REDIS_REPLICAS_PER_PRIMARY)]
    done = subprocess.run([*cmd, "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise StackError(f"redis-cli --cluster create failed: {last_line(done.stdout + done.stderr)}")


def _recorded_ports_free(state: ClusterState, running: list[bool]) -> bool:
    """True if every stopped node can restart on its recorded ports (its peers know it by them)."""
    if len(state.redis_ports) != REDIS_NODES or len(state.redis_bus_ports) != REDIS_NODES:
        return False
    return all(
        up or (port_free(state.redis_ports[n]) and port_free(state.redis_bus_ports[n])) for n, up in enumerate(running)
    )


def _new_redis_cluster_state(paths: ClusterPaths, state: ClusterState) -> None:
    """Forget the old Redis cluster (its node dirs, ports) so that a new one is created."""
    for number in range(1, REDIS_NODES + 1):
        shutil.rmtree(paths.redis(number).dir, ignore_errors=True)
    taken = set(state.es_http_ports + state.es_transport_ports)  # kept: Elasticsearch may run
    state.redis_ports, state.redis_bus_ports = [], []
    for _ in range(REDIS_NODES):
        state.redis_ports.append(usable_port(0, taken | set(state.redis_ports) | set(state.redis_bus_ports)))
        state.redis_bus_ports.append(usable_port(0, taken | set(state.redis_ports) | set(state.redis_bus_ports)))
    state.redis_pids = [0] * REDIS_NODES


def _start_redis(paths: ClusterPaths, state: ClusterState, deadline: float) -> list[int]:
    """Start the stopped Redis nodes (all of them, and create the cluster, the first time); the pids started."""
    running = [redis_running(paths, state, n) for n in range(1, REDIS_NODES + 1)]
    configured = all((paths.redis(n).dir / "nodes.conf").exists() for n in range(1, REDIS_NODES + 1))
    fresh = not (configured and _recorded_ports_free(state, running))
    if fresh:
        if any(running):
            raise StackError("Redis cluster nodes run that cannot be restarted as they were; `stack down --cluster`")
        _new_redis_cluster_state(paths, state)
        running = [False] * REDIS_NODES
    started: list[int] = []
    for index, up in enumerate(running):
        if up:
            continue
        options = _redis_options(state.redis_bus_ports[index])
        pid = redis.start(paths.redis(index + 1), state.redis_ports[index], deadline, options)
        state.redis_pids[index] = pid
        started.append(pid)
    save(paths, state)
    for port in state.redis_ports:
        _wait(lambda port=port: redis.ready(port), f"Redis cluster node on port {port}", deadline)
    if fresh:
        _create_redis_cluster(state.redis_ports)
    for port in state.redis_ports:
        _wait(lambda port=port: redis_cluster_ok(port), f"Redis Cluster state ok on port {port}", deadline)
    return started


# --------------------------------------------------------------------------- Elasticsearch cluster


def es_running(paths: ClusterPaths, state: ClusterState, number: int) -> bool:
    pids = state.es_pids
    return number <= len(pids) and elasticsearch.is_ours(pids[number - 1], paths.es(number))


def _es_role(state: ClusterState, number: int) -> NodeRole:
    names = tuple(f"{ES_CLUSTER_NAME}-{n}" for n in range(1, ES_NODES + 1))
    return NodeRole(names[number - 1], tuple(state.es_transport_ports), names)


def es_cluster_ready(http_port: int, nodes: int = ES_NODES) -> bool:
    """True once the node on ``http_port`` sees ``nodes`` nodes and a yellow or green cluster."""
    query = f"wait_for_nodes={nodes}&wait_for_status=yellow&timeout=1s"
    url = f"http://{LOOPBACK}:{http_port}/_cluster/health?{query}"
    try:
        with urllib.request.urlopen(url, timeout=3.0) as response:
            health: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return health.get("number_of_nodes") == nodes and health.get("status") in ("yellow", "green")


def _choose_es_ports(state: ClusterState, running: list[bool]) -> None:
    taken = set(state.redis_ports + state.redis_bus_ports)
    http = list(state.es_http_ports) or [0] * ES_NODES
    transport = list(state.es_transport_ports) or [0] * ES_NODES
    for index, up in enumerate(running):
        if not up:
            http[index] = usable_port(http[index], taken | set(http[:index]) | set(transport))
            transport[index] = usable_port(transport[index], taken | set(http) | set(transport[:index]))
    state.es_http_ports, state.es_transport_ports = http, transport


def _start_es(paths: ClusterPaths, state: ClusterState, deadline: float) -> list[int]:
    """Start the stopped Elasticsearch nodes side by side (a node's launcher waits for the cluster to form)."""
    running = [es_running(paths, state, n) for n in range(1, ES_NODES + 1)]
    _choose_es_ports(state, running)
    if len(state.es_pids) != ES_NODES:
        state.es_pids = [0] * ES_NODES
    save(paths, state)
    to_start = [n for n in range(1, ES_NODES + 1) if not running[n - 1]]

    def launch(number: int) -> int:
        index = number - 1
        node = paths.es(number)
        role = _es_role(state, number)
        return elasticsearch.start(node, state.es_http_ports[index], state.es_transport_ports[index], deadline, role)

    started: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=ES_NODES) as pool:
        futures = {number: pool.submit(launch, number) for number in to_start}
        errors: list[str] = []
        for number, future in futures.items():
            try:
                state.es_pids[number - 1] = future.result()
                started.append(state.es_pids[number - 1])
            except StackError as exc:
                errors.append(f"node {number}: {exc}")
                started.extend(elasticsearch.stray_pid(paths.es(number)))
    save(paths, state)
    if errors:
        stop_pids(started)
        raise StackError("; ".join(errors))
    first = state.es_http_ports[0]
    _wait(lambda: es_cluster_ready(first), "the Elasticsearch cluster", deadline, paths.es(1).log)
    return started


# --------------------------------------------------------------------------- the whole cluster stack


def _wait(ready: Any, what: str, deadline: float, log: Path | None = None) -> None:
    while not ready():
        if time.monotonic() > deadline:
            hint = f"; {log_hint(log)}" if log is not None else ""
            raise StackError(f"{what} not ready after {READY_TIMEOUT_S:.0f}s{hint}")
        time.sleep(0.25)


def up() -> tuple[ClusterInfo, bool]:
    """Start whatever node of the cluster stack is not running and wait until both clusters are healthy.

    Returns the seeds and whether this call started anything; on failure, stops what this call started."""
    paths = cluster_paths()
    with locked(paths):
        deadline = time.monotonic() + READY_TIMEOUT_S
        state = load(paths)
        started: list[int] = []
        try:
            started += _start_redis(paths, state, deadline)
            started += _start_es(paths, state, deadline)
        except BaseException:
            stop_pids(started)
            raise
        return info_of(state), bool(started)


def down() -> None:
    """Stop the nodes that `up` started (SIGTERM, then SIGKILL after 30 s). Their data stays."""
    paths = cluster_paths()
    if not paths.state_file.exists():
        return
    with locked(paths):
        state = load(paths)
        ours = [pid for n, pid in enumerate(state.redis_pids, 1) if redis_running(paths, state, n)]
        ours += [pid for n, pid in enumerate(state.es_pids, 1) if es_running(paths, state, n)]
        try:
            stop_pids(ours)
        except PermissionError as exc:
            raise StackError(f"not allowed to stop the cluster ({exc.strerror}); run as its owner") from exc
        state.redis_pids = [0] * len(state.redis_pids)
        state.es_pids = [0] * len(state.es_pids)
        save(paths, state)


def status() -> dict[str, str]:
    """Each node's state: "running at …" or "stopped"."""
    paths = cluster_paths()
    state = load(paths)
    parts: dict[str, str] = {}
    for number, port in enumerate(state.redis_ports, 1):
        parts[f"redis-{number}"] = (
            f"running at redis://{LOOPBACK}:{port}" if redis_running(paths, state, number) else "stopped"
        )
    for number, port in enumerate(state.es_http_ports, 1):
        url = elasticsearch.url(port)
        parts[f"elasticsearch-{number}"] = f"running at {url}" if es_running(paths, state, number) else "stopped"
    return parts or {"cluster": "never started"}


def info() -> ClusterInfo | None:
    """The seeds of the running cluster stack, or None unless every node runs."""
    paths = cluster_paths()
    state = load(paths)
    everything = all(redis_running(paths, state, n) for n in range(1, REDIS_NODES + 1)) and all(
        es_running(paths, state, n) for n in range(1, ES_NODES + 1)
    )
    return info_of(state) if everything else None


def primary_ports(port: int) -> list[int]:
    """The ports of the Redis primaries, as the node on ``port`` sees them (for tests and tooling)."""
    return [port for port, role in node_roles(port).items() if role == "master"]


def node_roles(port: int) -> dict[int, str]:
    """Port → "master" | "slave" for every connected node, as the node on ``port`` sees it (CLUSTER NODES)."""
    roles: dict[int, str] = {}
    for line in _redis_command(port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if len(fields) < 3 or "fail" in fields[2].split(","):
            continue
        address = fields[1].split("@")[0]
        flags = fields[2].split(",")
        role = "master" if "master" in flags else "slave"
        roles[int(address.rsplit(":", 1)[1])] = role
    return roles


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0
