"""The shared moving windows of rate limits and the brute-force guard: exact under concurrency from
several processes' worth of connections, on PostgreSQL, SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agentic_backend.billing.ratelimit import DatabaseWindows, RedisWindows, Windows
from agentic_backend.core.db import Database
from tests.helpers import REDIS_URL, require_redis


@pytest.fixture
async def redis_stores() -> AsyncIterator[list[Windows]]:
    """Three stores over one Redis, as three workers or replicas hold them."""
    await require_redis()
    prefix = f"agentic-test-rate:{uuid.uuid4().hex}"
    stores = [RedisWindows(REDIS_URL, prefix=prefix) for _ in range(3)]
    yield list(stores)
    for store in stores:
        await store.close()


@pytest.fixture
async def database_stores(database: Database) -> AsyncIterator[list[Windows]]:
    """Three stores over one database (SQLite, PostgreSQL), each with its own connections."""
    others = [Database(database.url) for _ in range(2)]  # their own connections, like other processes
    try:
        yield [DatabaseWindows(db, time.time) for db in (database, *others)]
    finally:
        for db in others:
            await db.close()


async def concurrent_hits_admit_exactly_the_limit(stores: list[Windows]) -> None:
    name = f"rpm:{uuid.uuid4().hex}"
    results = await asyncio.gather(*(stores[i % 3].hit(name, 7, 60) for i in range(40)))
    assert sum(w.allowed for w in results) == 7
    refused = next(w for w in results if not w.allowed)
    assert refused.remaining == 0
    assert 1 <= refused.reset_seconds <= 60
    assert refused.headers()["Retry-After"] == str(refused.reset_seconds)
    assert refused.headers()["X-RateLimit-Limit"] == "7"
    # Redis reads the remaining count after the hit, not with it: informational, within the limit.
    assert all(0 <= w.remaining < 7 for w in results)
    assert not (await stores[2].peek(name, 7, 60)).allowed
    assert (await stores[0].peek(f"rpm:{uuid.uuid4().hex}", 7, 60)).remaining == 7  # others untouched


async def the_window_moves(stores: list[Windows]) -> None:
    name = f"auth-fail:{uuid.uuid4().hex}"
    assert (await stores[0].hit(name, 2, 1)).allowed
    assert (await stores[1].hit(name, 2, 1)).allowed
    assert not (await stores[2].hit(name, 2, 1)).allowed
    await asyncio.sleep(1.1)
    assert (await stores[2].hit(name, 2, 1)).allowed


async def test_database_windows_admit_exactly_the_limit(database_stores: list[Windows]) -> None:
    await concurrent_hits_admit_exactly_the_limit(database_stores)


async def test_redis_windows_admit_exactly_the_limit(redis_stores: list[Windows]) -> None:
    await concurrent_hits_admit_exactly_the_limit(redis_stores)


async def test_database_windows_move(database_stores: list[Windows]) -> None:
    await the_window_moves(database_stores)


async def test_redis_windows_move(redis_stores: list[Windows]) -> None:
    await the_window_moves(redis_stores)


async def token_windows_hold_their_limit(stores: list[Windows]) -> None:
    name = f"tpm:{uuid.uuid4().hex}"
    results = await asyncio.gather(*(stores[i % 3].reserve(name, 1_000, 60, 100) for i in range(40)))
    held = [handle for _, handle in results if handle is not None]
    assert len(held) == 10  # calls in flight never hold more than the limit
    refused = next(window for window, handle in results if handle is None)
    assert refused.headers()["X-RateLimit-Limit"] == "1000"
    assert 1 <= refused.reset_seconds <= 60
    for handle in held[:5]:  # five calls used 10 tokens each, not the 100 they held
        await stores[0].settle(name, handle, 10)
    again = await asyncio.gather(*(stores[1].reserve(name, 1_000, 60, 100) for _ in range(10)))
    assert sum(handle is not None for _, handle in again) == 4  # 550 held: four more fit
    lone = f"tpm:{uuid.uuid4().hex}"
    _, handle = await stores[2].reserve(lone, 50, 60, 400)
    assert handle is not None  # an empty window lets one call through alone, as a budget does
    assert (await stores[0].reserve(lone, 50, 60, 1))[1] is None


async def test_database_token_windows_hold_their_limit(database_stores: list[Windows]) -> None:
    await token_windows_hold_their_limit(database_stores)


async def test_redis_token_windows_hold_their_limit(redis_stores: list[Windows]) -> None:
    await token_windows_hold_their_limit(redis_stores)
