"""API key scopes and the shorthands that expand to them."""

from __future__ import annotations

from collections.abc import Iterable

SCOPES = frozenset(
    {
        "jobs:create",
        "jobs:read",
        "jobs:read:progress",
        "jobs:poll",
        "jobs:ack",
        "jobs:progress",
        "jobs:log",
        "jobs:event",
        "jobs:complete",
        "jobs:fail",
        "jobs:kill",
        "jobs:keepalive",
    }
)

_WRITE = frozenset(
    {"jobs:ack", "jobs:progress", "jobs:log", "jobs:event", "jobs:complete", "jobs:fail", "jobs:keepalive"}
)
SHORTHANDS: dict[str, frozenset[str]] = {
    "jobs:write": _WRITE,
    "jobs:worker": _WRITE | {"jobs:read", "jobs:poll"},
}


def parse_scopes(text: str) -> tuple[str, ...]:
    """Split a comma-separated scope list, keeping shorthands as written; ValueError names unknown ones."""
    scopes = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [s for s in scopes if s not in SCOPES and s not in SHORTHANDS]
    if not scopes or unknown:
        allowed = ", ".join(sorted(SCOPES | SHORTHANDS.keys()))
        raise ValueError(f"unknown scope(s) {', '.join(unknown) or '(none given)'}; allowed: {allowed}")
    return scopes


def expand(granted: Iterable[str]) -> frozenset[str]:
    expanded: set[str] = set()
    for scope in granted:
        expanded |= SHORTHANDS.get(scope, frozenset({scope}))
    return frozenset(expanded)
