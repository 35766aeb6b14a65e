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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

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

    async def reserve(self, name: str, limit: int, seconds: int, amount: int) -> tuple[Window, str | None]:
        """Hold ``amount`` (a call's most tokens) in weighted window ``name`` if what it holds plus that fits
        ``limit``, or if it holds nothing (one call is always let through, as a budget does); the handle
        to ``settle`` it with, or None if refused."""
        ...

    async def settle(self, name: str, handle: str, amount: int) -> None:
        """Replace a reservation's amount by what the call really used."""
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
        # Token windows are weighted (a call holds thousands of tokens), which limits' moving window stores
        # as one list entry per unit: a sorted set of reservations by time, and their amounts in a hash,
        # updated atomically by these two scripts instead.
        self._prefix = prefix
        self._client = self._storage.bridge.storage  # type: ignore[attr-defined]  # limits' redis-py client
        self._reserve_script = self._client.register_script(_RESERVE)
        self._settle_script = self._client.register_script(_SETTLE)

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

    async def reserve(self, name: str, limit: int, seconds: int, amount: int) -> tuple[Window, str | None]:
        handle, now = uuid.uuid4().hex, time.time()
        allowed, held, oldest = await self._reserve_script(
            keys=[f"{self._prefix}:w:{name}:at", f"{self._prefix}:w:{name}:amount"],
            args=[limit, seconds, amount, handle, now],
        )
        held = int(held)
        reset = 0 if held < limit else _reset(float(oldest), seconds, now)
        window = Window(bool(allowed), limit, max(0, limit - held), reset)
        return window, handle if allowed else None

    async def settle(self, name: str, handle: str, amount: int) -> None:
        await self._settle_script(keys=[f"{self._prefix}:w:{name}:amount"], args=[handle, amount])

    async def purge(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()  # limits has no close of its own


# KEYS: the window's sorted set (reservation -> time) and hash (reservation -> amount).
# ARGV: limit, seconds, amount, reservation id, now. Returns: allowed, held after, oldest time.
_RESERVE = """
local limit, seconds, amount, id, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
    tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - seconds)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - seconds)
  redis.call('HDEL', KEYS[2], unpack(expired))
end
local held = 0
for _, value in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(value) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local oldest = first[2] or tostring(now)
if held > 0 and held + amount > limit then return {0, held, oldest} end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, amount)
redis.call('EXPIRE', KEYS[1], seconds + 1)
redis.call('EXPIRE', KEYS[2], seconds + 1)
return {1, held + amount, first[2] or tostring(now)}
"""
# KEYS: the window's hash. ARGV: reservation id, amount. Only a reservation still in the window changes.
_SETTLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


def _reset(oldest: float, seconds: int, now: float) -> int:
    """Seconds until the window's oldest hit leaves it (1 to ``seconds``: clocks of two processes differ
    by a little, and SQLite's write lock is taken after ``now`` is read)."""
    return min(seconds, max(1, math.ceil(oldest + seconds - now)))


def _lock_id(name: str) -> int:
    """A 63-bit advisory lock number for a window name (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:id)")
_FORGET = delete(RateHit).where(RateHit.name == bindparam("name"), RateHit.at <= bindparam("before"))
_HELD = select(func.coalesce(func.sum(RateHit.amount), 0), func.min(RateHit.at)).where(
    RateHit.name == bindparam("name")
)
_HELD_SINCE = _HELD.where(RateHit.at > bindparam("after"))
_ADD_AMOUNT = (
    insert(RateHit)
    .values(name=bindparam("name"), at=bindparam("at"), amount=bindparam("amount"))
    .returning(RateHit.id)
)
_SETTLE_AMOUNT = update(RateHit).where(RateHit.id == bindparam("hit")).values(amount=bindparam("used"))


class DatabaseWindows:
    _KEEP = 3600.0  # hits older than this (every window in use is shorter) are purged

    def __init__(self, database: Database, now: Callable[[], float]) -> None:
        self._db = database
        self._now = now  # wall-clock seconds: shared by every process

    async def _lock(self, connection: AsyncConnection, name: str, seconds: int) -> float:
        """Take window ``name``'s lock for this transaction, forget its hits older than ``seconds``, and
        return the time now (read after the lock: no hit of a holder before us is later than it)."""
        if self._db.dialect == "postgresql":
            started = time.perf_counter()
            await connection.execute(_ADVISORY_LOCK, {"id": _lock_id(name)})
            self._db.observe_wait("lock", time.perf_counter() - started)
        now = self._now()
        # On SQLite this write comes first: it takes the database's write lock, which serialises what the
        # caller reads next with every other process's hit.
        await connection.execute(_FORGET, {"name": name, "before": now - seconds})
        return now

    async def hit(self, name: str, limit: int, seconds: int) -> Window:
        # A hit is a reservation of 1 that stays: with every amount 1, "holds fewer than the limit" and
        # "holds nothing, or room for one more" are the same test.
        window, _ = await self.reserve(name, limit, seconds, 1)
        return window

    async def reserve(self, name: str, limit: int, seconds: int, amount: int) -> tuple[Window, str | None]:
        # Core on one connection, not the ORM: this runs on every limited query.
        async with self._db.engine.begin() as connection:
            now = await self._lock(connection, name, seconds)
            held, oldest = (await connection.execute(_HELD, {"name": name})).one()
            held = int(held)
            if held > 0 and held + amount > limit:
                return Window(False, limit, max(0, limit - held), _reset(float(oldest), seconds, now)), None
            handle = await connection.scalar(_ADD_AMOUNT, {"name": name, "at": now, "amount": amount})
        held += amount
        reset = 0 if held < limit else _reset(float(oldest) if oldest is not None else now, seconds, now)
        return Window(True, limit, max(0, limit - held), reset), str(handle)

    async def settle(self, name: str, handle: str, amount: int) -> None:
        async with self._db.autocommit.begin() as connection:  # one round trip on PostgreSQL
            await connection.execute(_SETTLE_AMOUNT, {"hit": int(handle), "used": amount})

    async def peek(self, name: str, limit: int, seconds: int) -> Window:
        now = self._now()
        async with self._db.autocommit.connect() as connection:
            held, oldest = (
                await connection.execute(_HELD_SINCE, {"name": name, "after": now - seconds})
            ).one()
        held = int(held)
        if held < limit:
            return Window(True, limit, limit - held, 0)
        return Window(False, limit, 0, _reset(float(oldest), seconds, now))

    async def purge(self) -> None:
        async with self._db.session() as session:
            await session.execute(delete(RateHit).where(RateHit.at <= self._now() - self._KEEP))
            await session.commit()

    async def close(self) -> None:
        return None
