"""The brute-force guard: too many failed authentications from one client address within a window
earn that address a cool-down (HTTP 429 with Retry-After). Other addresses are never affected.

State is per process and bounded: the least recently failing addresses are forgotten first once
``max_clients`` are tracked.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from agentic_backend.core.clock import Clock


class BruteForceGuard:
    def __init__(
        self, clock: Clock, *, limit: int, window: float, cooldown: float, max_clients: int = 100_000
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._cooldown = cooldown
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: dict[str, float] = {}

    def retry_after(self, client: str) -> int | None:
        """Seconds this client must wait, or None if it may try."""
        until = self._blocked_until.get(client)
        if until is None:
            return None
        remaining = until - self._clock.monotonic()
        if remaining <= 0:
            del self._blocked_until[client]
            return None
        return max(1, math.ceil(remaining))

    def failed(self, client: str) -> None:
        now = self._clock.monotonic()
        attempts = self._failures.get(client)
        if attempts is None:
            attempts = self._failures[client] = deque()
            if len(self._failures) > self._max_clients:
                forgotten, _ = self._failures.popitem(last=False)
                self._blocked_until.pop(forgotten, None)
        else:
            self._failures.move_to_end(client)
        attempts.append(now)
        while attempts and attempts[0] <= now - self._window:
            attempts.popleft()
        if len(attempts) >= self._limit:
            self._blocked_until[client] = now + self._cooldown
            attempts.clear()

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
