"""The response cache as agents use it: keys from normalised queries, every operation counted, and a Redis
outage turned into cache misses (the query still runs) and counted errors rather than failed queries."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time

from agentic_backend.cache.backends import CacheBackend, MemoryCache
from agentic_backend.core.tasks import cancel
from agentic_backend.monitoring.catalogue import BuiltinMetrics
from agentic_backend.monitoring.schemas import ComponentHealth

SHARED_SIZE_SECONDS = 10.0

logger = logging.getLogger(__name__)
_SPACE = re.compile(r"\s+")


def cache_key(agent_type: str, model: str, query: str, scope: str = "") -> str:
    """Identical stateless queries share a key: same agent type and model, same text up to case and spaces,
    same ``scope`` (the API key's id by default: one tenant never receives an answer another's query made,
    nor learns from a hit what another asked)."""
    normalised = _SPACE.sub(" ", query.strip().lower())
    return hashlib.sha256(f"{scope}\x00{agent_type}\x00{model}\x00{normalised}".encode()).hexdigest()


class ResponseCache:
    def __init__(self, backend: CacheBackend, metrics: BuiltinMetrics, ttl: float) -> None:
        self.backend = backend
        self._ttl = ttl
        ops = metrics.cache_operations
        self._hit, self._miss, self._get_error = (
            ops.labels("get", "hit"),
            ops.labels("get", "miss"),
            ops.labels("get", "error"),
        )
        self._set_ok, self._set_error = ops.labels("set", "ok"), ops.labels("set", "error")
        self._delete_ok, self._delete_error = ops.labels("delete", "ok"), ops.labels("delete", "error")
        self._size = metrics.cache_size.labels()
        self._size_read_at: float | None = None
        self._size_reader: asyncio.Task[None] | None = None  # a count of the shared store's size under way
        # A process-local cache keeps its gauge current on every change, so that with several workers the
        # sum of their gauges is right at any scrape, whichever worker answers it.
        self._local = backend if isinstance(backend, MemoryCache) else None

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.backend.get(key)
        except Exception as exc:  # the cache is an optimisation: never fail a query for it
            self._failed("get", exc)
            self._get_error.inc()
            return None
        (self._hit if value is not None else self._miss).inc()
        if value is None:  # a get can drop an expired entry
            self._local_size_changed()
        return value

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self.backend.set(key, value, self._ttl)
        except Exception as exc:
            self._failed("set", exc)
            self._set_error.inc()
            return
        self._set_ok.inc()
        self._local_size_changed()

    async def delete(self, key: str) -> None:
        try:
            await self.backend.delete(key)
        except Exception as exc:
            self._failed("delete", exc)
            self._delete_error.inc()
            return
        self._delete_ok.inc()
        self._local_size_changed()

    def _local_size_changed(self) -> None:
        if self._local is not None:
            self._size.set(self._local.stored_bytes)

    def _failed(self, operation: str, exc: Exception) -> None:
        logger.warning("response cache %s failed: %s", operation, type(exc).__name__)

    async def refresh_size(self) -> None:
        """Before a scrape or a summary. A shared store's size is a SCAN of every cached key, summed inside
        Redis (backends._SIZE_STEP: 15 ms of a worker's CPU for 50,000 entries, 750 ms when redis-py parsed
        a STRLEN per key). Done at each read, the summaries loadgen sends (12 a second) held every worker's
        loop and Redis with them (bench/workers.py, 4 workers: p99 600 ms against 90 ms without Redis). It
        is read at most every ``SHARED_SIZE_SECONDS`` per worker, counted at most that often by all of
        them together (``shared_size_bytes``), and, but for the first, in the background: the scrape or
        summary that finds the size old answers with the last one rather than wait for a count (37,000
        entries: 75 steps, about 100 ms, the soak's slowest summaries)."""
        if not self.backend.shared:
            self._size.set(await self.backend.size_bytes())
            return
        now = time.monotonic()
        if self._size_read_at is not None and now - self._size_read_at < SHARED_SIZE_SECONDS:
            return
        first = self._size_read_at is None
        self._size_read_at = now
        if first:
            await self._read_shared_size()
        elif self._size_reader is None or self._size_reader.done():
            self._size_reader = asyncio.create_task(self._read_shared_size())

    async def _read_shared_size(self) -> None:
        try:
            size = await self.backend.shared_size_bytes(SHARED_SIZE_SECONDS)
        except Exception as exc:  # the gauge keeps its last size; /health says whether Redis answers
            self._failed("size", exc)
            return
        if size is not None:
            self._size.set(size)

    async def close(self) -> None:
        """Stop a count of the size under way, then close the back-end."""
        await cancel(self._size_reader)
        await self.backend.close()

    async def health(self) -> ComponentHealth:
        try:
            await self.backend.ping()
        except Exception as exc:
            return ComponentHealth(
                status="degraded",
                detail=f"{self.backend.name} unreachable ({type(exc).__name__}): queries run uncached",
            )
        return ComponentHealth(status="ok", detail=f"{self.backend.name} cache")
