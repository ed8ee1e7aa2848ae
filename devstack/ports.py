"""Loopback ports: ``free_port()`` (the one free-port helper of the repo) and the choice of the stack's ports."""

from __future__ import annotations

import socket
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass
class Ports:
    """The stack's ports (recorded in stack.json)."""

    redis: int = 0
    es_http: int = 0
    es_transport: int = 0


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released without listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    """True if nothing listens on the port (TIME_WAIT leftovers don't count, as for the servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def usable_port(port: int, taken: set[int]) -> int:
    """Return `port` if it is set, unclaimed and free; otherwise a new free port."""
    if port > 0 and port not in taken and port_free(port):
        return port
    while True:
        candidate = free_port()
        if candidate not in taken:
            return candidate


def choose_ports(ports: Ports, redis_running: bool, es_running: bool) -> Ports:
    """Keep the ports of running parts; re-check the rest and replace any taken by others."""
    redis = ports.redis if redis_running else 0
    http = ports.es_http if es_running else 0
    transport = ports.es_transport if es_running else 0
    if not redis_running:
        redis = usable_port(ports.redis, {http, transport})
    if not es_running:
        http = usable_port(ports.es_http, {redis})
        transport = usable_port(ports.es_transport, {redis, http})
    return Ports(redis=redis, es_http=http, es_transport=transport)
