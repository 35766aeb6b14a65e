"""Cache back-ends. Both store opaque bytes under string keys with a time-to-live."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis


class CacheBackend(Protocol):
    name: str
    shared: bool  # one store for every worker and replica (Redis), or one per process (memory)

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def size_bytes(self) -> int: ...
    async def shared_size_bytes(self, max_age: float) -> int | None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    """A least-recently-used cache bounded by the bytes of its keys and values; expired entries are dropped
    when met. ``size_bytes`` is exact: the sum of stored key and value lengths."""

    name = "memory"
    shared = False

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        size = len(key) + len(value)
        if size > self._max:
            return  # larger than the whole cache: not worth evicting everything for
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (value, self._clock() + ttl)
        self._bytes += size
        while self._bytes > self._max:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def delete(self, key: str) -> None:
        if key in self._entries:
            self._remove(key)

    def _remove(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= len(key) + len(value)

    async def size_bytes(self) -> int:
        return self._bytes

    async def shared_size_bytes(self, max_age: float) -> int | None:
        return self._bytes

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


# One step of a SCAN over the cache's keys, inside Redis: the next cursor, how many keys it met, and the
# bytes of their names and values. Summing there rather than in Python matters: the entries grow with
# traffic (50,000 after 20 minutes of loadgen's mix), and a STRLEN answer per key parsed by redis-py cost
# each worker a quarter of its CPU and doubled p50 in the 30-minute soak (bench/workers.py --soak; py-spy
# showed RedisCache.size_bytes in 27 % of a worker's samples). Each step holds Redis for one COUNT's keys.
_SIZE_STEP = """
local found = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local bytes = 0
for _, name in ipairs(found[2]) do
  bytes = bytes + #name + redis.call('STRLEN', name)
end
return {found[1], #found[2], bytes}
"""
_SIZE_STEP_KEYS = 500  # SCAN's COUNT for one step
# Releases the "counting" key only if it is still this counter's: a count that outlived the key's expiry
# must not delete the key of the counter that took it since.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_COUNTING_MS = 60_000  # how long one worker's claim to be counting lasts, at most
_SIZE_SHARE = 0.01  # of Redis's time, at most, that counting the cache's size may take


class RedisCache:
    """Entries are Redis strings under ``prefix``, expiring on their own. ``size_bytes`` sums the stored
    keys' and values' lengths (up to ``scan_limit`` keys), counted inside Redis a step at a time."""

    name = "redis"
    shared = True

    def __init__(
        self, url: str, *, prefix: str = "agentic:cache:", timeout: float = 0.5, scan_limit: int = 100_000
    ) -> None:
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._prefix = prefix
        self._scan_limit = scan_limit
        self._size_step = self._client.register_script(_SIZE_STEP)
        self._release = self._client.register_script(_RELEASE)
        self._size_key = prefix.rstrip(":") + "-size"  # outside the prefix: neither scanned nor an entry

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(self._prefix + key)
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._client.set(self._prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self._client.delete(self._prefix + key)

    async def size_bytes(self) -> int:
        total, seen, cursor = 0, 0, b"0"
        while seen < self._scan_limit:
            cursor, keys, size = await self._size_step(args=[cursor, self._prefix + "*", _SIZE_STEP_KEYS])
            total, seen = total + int(size), seen + int(keys)
            if int(cursor) == 0:
                break
        return total

    async def shared_size_bytes(self, max_age: float) -> int | None:
        """``size_bytes``, counted once for every worker and replica of this Redis: the first to ask counts
        and stores the size for ``max_age`` seconds (or 100 times what the count took, if longer), the
        others read it; None while another is counting. The scan's cost grows with the entries: each
        worker of each replica counting on its own made Redis's CPU a request grow from 0.10 to 0.22 ms in
        the first 15 minutes of the soak (bench/workers.py --soak, 2 workers; 37,000 entries, 0.1 s of
        Redis a count)."""
        stored = await self._client.get(self._size_key)
        if stored is not None:
            return int(stored)
        counting = self._size_key + ":counting"
        token = secrets.token_hex(8)
        if not await self._client.set(counting, token, nx=True, px=_COUNTING_MS):
            return None
        try:
            started = time.monotonic()
            size = await self.size_bytes()
            keep = max(max_age, (time.monotonic() - started) / _SIZE_SHARE)
            await self._client.set(self._size_key, size, px=max(1, int(keep * 1000)))
        finally:
            await self._release(keys=[counting], args=[token])
        return size

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
