"""The cache back-ends: the in-memory LRU's bounds, the machine's real Redis, and Redis going away."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.cache.backends import MemoryCache, RedisCache
from agentic_backend.core.config import Settings
from tests.conftest import ClientFor
from tests.helpers import REDIS_URL, require_redis, samples
from tests.integration.harness import free_port


async def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    now = [0.0]
    cache = MemoryCache(max_bytes=100, clock=lambda: now[0])
    await cache.set("a", b"x" * 30, ttl=10)  # 31 bytes with its key
    await cache.set("b", b"x" * 30, ttl=10)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.set("c", b"x" * 30, ttl=10)
    await cache.set("d", b"x" * 30, ttl=10)  # 124 bytes: b goes first
    assert await cache.get("b") is None
    assert await cache.get("a") is not None
    assert await cache.size_bytes() <= 100
    assert await cache.size_bytes() == sum(1 + 30 for _ in range(len(cache)))
    await cache.set("huge", b"x" * 500, ttl=10)  # larger than the cache: not stored, nothing evicted
    assert await cache.get("huge") is None
    assert len(cache) == 3
    now[0] = 11.0
    assert await cache.get("a") is None  # expired
    await cache.delete("c")
    assert await cache.size_bytes() == 31


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    await require_redis()
    prefix = f"agentic-test:{uuid.uuid4().hex}:"
    cache = RedisCache(REDIS_URL, prefix=prefix)
    yield cache
    cleanup = aioredis.Redis.from_url(REDIS_URL)
    names = [n async for n in cleanup.scan_iter(match=prefix + "*")]
    if names:
        await cleanup.delete(*names)
    await cleanup.aclose()
    await cache.close()


async def test_redis_cache_round_trip_ttl_and_size(redis_cache: RedisCache) -> None:
    await redis_cache.set("k1", b"hello", ttl=60)
    await redis_cache.set("k2", b"world!", ttl=0.2)
    assert await redis_cache.get("k1") == b"hello"
    size = await redis_cache.size_bytes()
    assert size >= len(b"hello") + len(b"world!")
    import asyncio

    await asyncio.sleep(0.4)
    assert await redis_cache.get("k2") is None
    await redis_cache.delete("k1")
    assert await redis_cache.get("k1") is None
    assert await redis_cache.size_bytes() == 0


async def test_redis_cache_size_is_every_key_and_value_over_several_steps(redis_cache: RedisCache) -> None:
    # 2,500 entries: several steps of the SCAN counted inside Redis (_SIZE_STEP_KEYS a step); other
    # prefixes' keys are not counted.
    entries = {f"key-{n}": b"v" * (n % 97) for n in range(2500)}
    for name, value in entries.items():
        await redis_cache.set(name, value, ttl=60)
    other = RedisCache(REDIS_URL, prefix=f"agentic-test-other:{uuid.uuid4().hex}:")
    await other.set("not-mine", b"x" * 1000, ttl=5)
    expected = sum(len(redis_cache._prefix + name) + len(value) for name, value in entries.items())
    assert await redis_cache.size_bytes() == expected
    await other.delete("not-mine")
    await other.close()


async def test_two_replicas_share_the_redis_cache(
    make_settings: Callable[..., Settings], client_for: ClientFor, redis_cache: RedisCache, tmp_path: Path
) -> None:
    settings = make_settings(redis_url=REDIS_URL, data_dir=tmp_path / "shared")
    async with client_for(create_app(settings)) as first, client_for(create_app(settings)) as second:
        query = {"query": f"shared question {uuid.uuid4().hex}"}
        assert not (await first.post("/api/v1/agents/assistant/query", json=query)).json()["cached"]
        assert (await second.post("/api/v1/agents/assistant/query", json=query)).json()["cached"]


async def test_when_redis_goes_away_queries_still_succeed_uncached(
    make_settings: Callable[..., Settings], client_for: ClientFor
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with client_for(create_app(make_settings(redis_url=dead))) as client:
        for _ in range(2):
            response = await client.post("/api/v1/agents/assistant/query", json={"query": "still there?"})
            assert response.status_code == 200
            assert not response.json()["cached"]
        health = (await client.get("/api/v1/monitoring/health")).json()
        assert health["status"] == "degraded"
        assert health["components"]["cache"]["status"] == "degraded"
        metrics = await client.get("/api/v1/monitoring/metrics")
        assert metrics.status_code == 200
        got = samples(metrics.text)
        assert got[("cache_operations_total", frozenset({("operation", "get"), ("result", "error")}))] == 2
        assert got[("cache_operations_total", frozenset({("operation", "set"), ("result", "error")}))] == 2
        # The rate limits live there too: a limited key is refused with a 503 rather than served
        # unlimited, and so is a failing authentication (its guard window is there).
        created = (
            await client.post("/api/v1/keys", json={"name": "limited", "role": "user", "rpm_limit": 5})
        ).json()
        limited = {"authorization": f"Bearer {created['key']}"}
        response = await client.post("/api/v1/agents/assistant/query", json={"query": "q"}, headers=limited)
        assert response.status_code == 503
        assert response.json()["error"] == "StorageUnavailable"
        assert "retry-after" in response.headers
        bad = await client.get("/api/v1/usage", headers={"authorization": "Bearer agb_wrongwrongwrong_x"})
        assert bad.status_code == 503


async def test_a_memory_cache_keeps_its_size_gauge_current_without_a_scrape(settings: Settings) -> None:
    # With several workers, a scrape refreshes only the answering worker's gauges: the others' must be
    # right already, so the memory cache updates its gauge on every change.
    app = create_app(settings)
    cache = state.of(app).cache
    gauge = state.of(app).telemetry.metrics.cache_size.labels()
    await cache.set("k1", b"x" * 100)
    assert gauge.get() == 102
    await cache.set("k2", b"y" * 50)
    assert gauge.get() == 154
    await cache.delete("k1")
    assert gauge.get() == 52
