"""Moving windows shared by every worker and replica: requests per minute per key, and the brute-force
guard's failed attempts per client address.

Two stores, one promise (a window never admits more than its limit, whichever process asks):

- ``RedisWindows`` when ``AGENTIC_REDIS_URL`` is set: the ``limits`` library's moving window on Redis (a
  Lua script per hit, atomic on the server), shared by every replica that uses that Redis.
- ``DatabaseWindows`` otherwise: one row per admitted hit in ``rate_hits``, counted and inserted in one
  transaction that holds a per-window lock (PostgreSQL: a transaction advisory lock; SQLite: the write
  lock its first statement takes), so the workers of one ``serve`` and replicas on one PostgreSQL share it.

No in-process store is offered: with several workers it silently multiplies every limit.
``bench/ratelimit.py`` measures both against ``limits``' in-process memory store.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy import bindparam, delete, func, insert, select, text

from agentic_backend.billing.models import RateHit
from agentic_backend.core.db import Database


@dataclass(frozen=True, slots=True)
class Window:
    """The outcome of a hit (or a look): whether it was admitted, how many more the window admits now, and
    in how many seconds it admits the next one (0 if it does now)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` (the de-facto headers GitHub, Stripe and IETF's draft use) and, if refused,
        ``Retry-After``."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_seconds))
        return headers


class Windows(Protocol):
    async def hit(self, name: str, limit: int, seconds: int) -> Window:
        """Admit one hit of window ``name`` if it holds fewer than ``limit`` in the last ``seconds``."""
        ...

    async def peek(self, name: str, limit: int, seconds: int) -> Window:
        """The window as ``hit`` would find it, without hitting it."""
        ...

    async def purge(self) -> None:
        """Forget windows no hit is in any more (the database store; Redis expires its keys)."""
        ...

    async def close(self) -> None: ...


class RedisWindows:
    def __init__(self, url: str, *, prefix: str = "agentic-rate") -> None:
        self._storage = RedisStorage(
            "async+" + url if not url.startswith("async+") else url,
            implementation="redispy",
            key_prefix=prefix,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, name: str, limit: int, seconds: int) -> Window:
        item = RateLimitItemPerSecond(limit, seconds)
        allowed = await self._limiter.hit(item, name)
        return await self._window(item, name, allowed)

    async def peek(self, name: str, limit: int, seconds: int) -> Window:
        item = RateLimitItemPerSecond(limit, seconds)
        return await self._window(item, name, await self._limiter.test(item, name))

    async def _window(self, item: RateLimitItemPerSecond, name: str, allowed: bool) -> Window:
        stats = await self._limiter.get_window_stats(item, name)
        reset = 0 if stats.remaining > 0 else max(1, math.ceil(stats.reset_time - time.time()))
        return Window(allowed, item.amount, stats.remaining, reset)

    async def purge(self) -> None:
        return None

    async def close(self) -> None:
        # limits has no close of its own; its redis-py client is the bridge's.
        await self._storage.bridge.storage.aclose()  # type: ignore[attr-defined]


def _reset(oldest: float, seconds: int, now: float) -> int:
    """Seconds until the window's oldest hit leaves it (1 to ``seconds``: clocks of two processes differ
    by a little, and SQLite's write lock is taken after ``now`` is read)."""
    return min(seconds, max(1, math.ceil(oldest + seconds - now)))


def _lock_id(name: str) -> int:
    """A 63-bit advisory lock number for a window name (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:id)")
_FORGET = delete(RateHit).where(RateHit.name == bindparam("name"), RateHit.at <= bindparam("before"))
_COUNT = select(func.count(), func.min(RateHit.at)).where(RateHit.name == bindparam("name"))
_ADD = insert(RateHit).values(name=bindparam("name"), at=bindparam("at"))


class DatabaseWindows:
    _KEEP = 3600.0  # hits older than this (every window in use is shorter) are purged

    def __init__(self, database: Database, now: Callable[[], float]) -> None:
        self._db = database
        self._now = now  # wall-clock seconds: shared by every process

    async def hit(self, name: str, limit: int, seconds: int) -> Window:
        # Core on one connection, not the ORM: this runs on every limited query.
        async with self._db.engine.begin() as connection:
            if self._db.dialect == "postgresql":
                await connection.execute(_ADVISORY_LOCK, {"id": _lock_id(name)})
            now = self._now()  # after the lock: no hit holding it before us is later than this
            # On SQLite this write comes first: it takes the database's write lock, which serialises the
            # count below with every other process's hit.
            await connection.execute(_FORGET, {"name": name, "before": now - seconds})
            count, oldest = (await connection.execute(_COUNT, {"name": name})).one()
            count = int(count)
            if count >= limit:
                return Window(False, limit, 0, _reset(float(oldest), seconds, now))
            await connection.execute(_ADD, {"name": name, "at": now})
        remaining = limit - count - 1
        reset = 0 if remaining > 0 else _reset(float(oldest) if count else now, seconds, now)
        return Window(True, limit, remaining, reset)

    async def peek(self, name: str, limit: int, seconds: int) -> Window:
        now = self._now()
        async with self._db.session() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(RateHit.at)).where(
                        RateHit.name == name, RateHit.at > now - seconds
                    )
                )
            ).one()
        count = int(count)
        if count < limit:
            return Window(True, limit, limit - count, 0)
        return Window(False, limit, 0, _reset(float(oldest), seconds, now))

    async def purge(self) -> None:
        async with self._db.session() as session:
            await session.execute(delete(RateHit).where(RateHit.at <= self._now() - self._KEEP))
            await session.commit()

    async def close(self) -> None:
        return None
