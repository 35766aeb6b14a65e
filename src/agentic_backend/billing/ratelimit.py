"""Requests per minute per key: a sliding window of the last minute's request times.

Kept in the process: with N workers a key gets up to N times its limit in the worst case (requests spread
evenly); the README says so. Memory is bounded: one deque of at most ``limit`` entries per key seen.
"""

from __future__ import annotations

import math
from collections import deque

from agentic_backend.core.clock import Clock

WINDOW = 60.0


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._recent: dict[int, deque[float]] = {}

    def acquire(self, key_id: int, limit: int) -> int | None:
        """Count one request; return None if allowed, or the seconds to wait before the next one."""
        now = self._clock.monotonic()
        recent = self._recent.setdefault(key_id, deque())
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        if len(recent) >= limit:
            return max(1, math.ceil(recent[0] + WINDOW - now))
        recent.append(now)
        return None
