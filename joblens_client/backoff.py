"""How long to wait before a retry: exponential backoff with jitter, never shorter than the server's
``Retry-After``."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.2
    cap_s: float = 5.0

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """The wait before retry number ``attempt`` (0 for the first). Half of it is random ("equal jitter"):
        clients that failed together do not come back together, and none comes back at once."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 30))
        jittered = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(jittered, retry_after_s or 0.0)
