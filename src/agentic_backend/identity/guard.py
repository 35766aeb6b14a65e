"""The brute-force guard: too many failed authentications from one client address within a window earn
that address a cool-down, during which its failing attempts get HTTP 429 (with Retry-After) instead of 401.

Only failing attempts are throttled: a valid key is always served, so clients that share an address with
an attacker (behind a NAT or a proxy) are never locked out. Both windows live in the shared store
(billing/ratelimit.py), so the guard holds across workers and replicas. Behind a proxy, run
``serve --proxy-headers --forwarded-allow-ips <proxy>`` so that the address is the client's, not the proxy's.
"""

from __future__ import annotations

from agentic_backend.billing.ratelimit import Windows


class BruteForceGuard:
    def __init__(self, windows: Windows, *, limit: int, window: float, cooldown: float) -> None:
        self._windows = windows
        self._limit = limit
        self._window = max(1, round(window))
        self._cooldown = max(1, round(cooldown))

    async def retry_after(self, client: str) -> int | None:
        """Seconds this client's failing attempts are throttled for, or None."""
        blocked = await self._windows.peek(f"auth-block:{client}", 1, self._cooldown)
        return None if blocked.allowed else blocked.reset_seconds

    async def failed(self, client: str) -> None:
        """Count a failed attempt; the ``limit``-th within the window starts the cool-down."""
        failures = await self._windows.hit(f"auth-fail:{client}", self._limit, self._window)
        if failures.remaining == 0:
            await self._windows.hit(f"auth-block:{client}", 1, self._cooldown)
