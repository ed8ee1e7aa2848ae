"""The whole stack (one Redis, one Elasticsearch node): ``up``, ``down``, ``status``, ``info``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack import elasticsearch, redis
from devstack.errors import StackError
from devstack.paths import Paths, Pids, State, load_state, locked, save_state, stack_paths
from devstack.ports import Ports, choose_ports
from devstack.processes import log_hint, stop_pids

__all__ = ["READY_TIMEOUT_S", "StackError", "StackInfo", "down", "info", "status", "up"]

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StackInfo:
    """Connection URLs of a running stack."""

    redis_url: str
    elasticsearch_url: str


def _stack_info(ports: Ports) -> StackInfo:
    return StackInfo(redis.url(ports.redis), elasticsearch.url(ports.es_http))


def _wait_ready(paths: Paths, state: State, deadline: float) -> None:
    checks: list[tuple[str, Callable[[], bool], Callable[[], bool], Path]] = [
        (
            "Redis",
            lambda: redis.ready(state.ports.redis),
            lambda: redis.is_ours(state.pids.redis, paths.redis),
            paths.redis.log,
        ),
        (
            "Elasticsearch",
            lambda: elasticsearch.ready(state.ports.es_http),
            lambda: elasticsearch.is_ours(state.pids.elasticsearch, paths.es),
            paths.es.log,
        ),
    ]
    for name, ready, alive, log in checks:
        while not ready():
            hint = log_hint(log)
            if not alive():
                raise StackError(f"{name} exited during startup; {hint}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s; {hint}")
            time.sleep(0.5)


def up() -> tuple[StackInfo, bool]:
    """Start whatever part of the stack is not running and wait until both are ready.

    Returns the URLs and whether this call started anything. On failure, stops
    what this call started and raises StackError.
    """
    paths = stack_paths()
    with locked(paths):
        deadline = time.monotonic() + READY_TIMEOUT_S
        state = load_state(paths)
        redis_running = redis.is_ours(state.pids.redis, paths.redis)
        es_running = elasticsearch.is_ours(state.pids.elasticsearch, paths.es)
        state.ports = choose_ports(state.ports, redis_running, es_running)
        started: list[int] = []
        try:
            if not redis_running:
                state.pids.redis = redis.start(paths.redis, state.ports.redis, deadline)
                started.append(state.pids.redis)
                save_state(paths, state)
            if not es_running:
                ports = state.ports
                state.pids.elasticsearch = elasticsearch.start(paths.es, ports.es_http, ports.es_transport, deadline)
                started.append(state.pids.elasticsearch)
            save_state(paths, state)
            _wait_ready(paths, state, deadline)
        except BaseException:
            stop_pids(started if es_running else [*started, *elasticsearch.stray_pid(paths.es)])
            raise
        return _stack_info(state.ports), bool(started)


def down() -> None:
    """Stop the processes that `up` started (SIGTERM, then SIGKILL after 30 s)."""
    paths = stack_paths()
    if not paths.state_file.exists():
        return
    with locked(paths):
        state = load_state(paths)
        ours = [
            pid
            for pid, is_ours in (
                (state.pids.redis, redis.is_ours(state.pids.redis, paths.redis)),
                (state.pids.elasticsearch, elasticsearch.is_ours(state.pids.elasticsearch, paths.es)),
            )
            if is_ours
        ]
        try:
            stop_pids(ours)
        except PermissionError as exc:
            raise StackError(f"not allowed to stop the stack ({exc.strerror}); run as its owner") from exc
        state.pids = Pids()
        save_state(paths, state)


def status() -> dict[str, str]:
    """Each part's state: "running at URL" or "stopped"."""
    paths = stack_paths()
    state = load_state(paths)
    redis_up = redis.is_ours(state.pids.redis, paths.redis)
    es_up = elasticsearch.is_ours(state.pids.elasticsearch, paths.es)
    return {
        "redis": f"running at {redis.url(state.ports.redis)}" if redis_up else "stopped",
        "elasticsearch": f"running at {elasticsearch.url(state.ports.es_http)}" if es_up else "stopped",
    }


def info() -> StackInfo | None:
    """URLs of the running stack, or None unless both parts are running."""
    paths = stack_paths()
    state = load_state(paths)
    if redis.is_ours(state.pids.redis, paths.redis) and elasticsearch.is_ours(state.pids.elasticsearch, paths.es):
        return _stack_info(state.ports)
    return None
