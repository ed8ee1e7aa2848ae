"""The state dir: its layout, the recorded state (stack.json) and the lock serialising up/down."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devstack.elasticsearch import EsPaths
from devstack.errors import StackError
from devstack.ports import Ports
from devstack.redis import RedisPaths

# Outside root's home on purpose: the unprivileged Elasticsearch user must read it.
DEFAULT_STATE_DIR = "/var/tmp/joblens-stack"  # noqa: S108


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
    """Every file and directory the stack uses, derived from the state dir (each node's own: see its module)."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "stack.lock"

    @property
    def redis(self) -> RedisPaths:
        return RedisPaths(self.root / "redis")

    @property
    def es(self) -> EsPaths:
        return EsPaths(self.root / "es")


def stack_paths() -> Paths:
    """The state dir of this process: ``JOBLENS_STACK_DIR``, else DEFAULT_STATE_DIR."""
    return Paths(Path(os.environ.get("JOBLENS_STACK_DIR", DEFAULT_STATE_DIR)).resolve())


def load_state(paths: Paths) -> State:
    try:
        raw: dict[str, Any] = json.loads(paths.state_file.read_text())
        return State(ports=Ports(**raw.get("ports", {})), pids=Pids(**raw.get("pids", {})))
    except FileNotFoundError:
        return State()
    except (ValueError, TypeError) as exc:
        raise StackError(f"corrupt {paths.state_file}: {exc}; remove it after stopping the stack") from exc


def save_state(paths: Paths, state: State) -> None:
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(paths.state_file)


class Lockable(Protocol):
    """A state dir with its lock file (the single stack's `Paths`, the cluster's `ClusterPaths`)."""

    @property
    def root(self) -> Path: ...

    @property
    def lock_file(self) -> Path: ...


@contextlib.contextmanager
def locked(paths: Lockable) -> Iterator[None]:
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
