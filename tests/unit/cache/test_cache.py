"""The cache back-ends: the in-memory LRU's bounds, the machine's real Redis, and Redis going away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.cache import backends
from agentic_backend.cache import service as cache_service
from agentic_backend.cache.backends import MemoryCache, RedisCache
from agentic_backend.cache.service import ResponseCache
from agentic_backend.core.config import Settings
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring.service import Telemetry
from tests.conftest import ClientFor
from tests.helpers import REDIS_URL, require_redis, samples
from tests.helpers import value as metric_value
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


async def test_one_count_of_the_redis_cache_size_serves_every_worker_and_replica(
    redis_cache: RedisCache,
) -> None:
    # The size is a scan of every entry, whose cost grows with them: the first to ask counts it, and every
    # worker and replica reads that count until it is max_age old, rather than each scanning Redis.
    prefix = redis_cache._prefix
    await redis_cache.set("k1", b"x" * 10, ttl=60)
    replica = RedisCache(REDIS_URL, prefix=prefix)
    try:
        counted = time.monotonic()
        first = await redis_cache.shared_size_bytes(max_age=0.5)
        assert first == len(prefix + "k1") + 10
        await redis_cache.set("k2", b"y" * 20, ttl=60)
        now = first + len(prefix + "k2") + 20
        assert await redis_cache.size_bytes() == now  # what a count would say
        assert await replica.shared_size_bytes(max_age=0.5) == first  # the stored count, not a new one
        seen = []  # once the stored count is older than max_age (longer if counting was slow), a new count
        for _ in range(100):
            seen.append(await replica.shared_size_bytes(max_age=0.5))
            if seen[-1] != first:
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == now
        assert time.monotonic() - counted >= 0.5
        # While one is counting, the others keep their last size (None) rather than count as well.
        cleanup = aioredis.Redis.from_url(REDIS_URL)
        size_key = prefix.rstrip(":") + "-size"
        await cleanup.delete(size_key)
        await cleanup.set(size_key + ":counting", b"1", px=5_000)
        assert await replica.shared_size_bytes(max_age=0.5) is None
        await cleanup.delete(size_key + ":counting")
        await cleanup.aclose()
    finally:
        await replica.close()


async def test_a_count_that_outlived_its_claim_leaves_the_next_counters_claim_alone(
    redis_cache: RedisCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A count slower than its "counting" key's expiry: meanwhile another worker takes the key. The first,
    # finishing, must not delete that key, or a third count would start beside the second.
    monkeypatch.setattr(backends, "_COUNTING_MS", 100)
    counting = redis_cache._prefix.rstrip(":") + "-size:counting"
    other = aioredis.Redis.from_url(REDIS_URL)
    scan = redis_cache.size_bytes

    async def slow_scan() -> int:
        await asyncio.sleep(0.3)  # the claim expires
        assert await other.set(counting, b"theirs", nx=True, px=5_000)  # and another worker takes it
        return await scan()

    monkeypatch.setattr(redis_cache, "size_bytes", slow_scan)
    try:
        assert await redis_cache.shared_size_bytes(max_age=0.5) == 0
        assert await other.get(counting) == b"theirs"
        # Its own claim, when still held, is released.
        await other.delete(counting, redis_cache._prefix.rstrip(":") + "-size")
        monkeypatch.setattr(redis_cache, "size_bytes", scan)
        assert await redis_cache.shared_size_bytes(max_age=0.5) == 0
        assert await other.get(counting) is None
    finally:
        await other.delete(counting)
        await other.aclose()


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


class _SlowSharedStore:
    """A shared store whose size is counted only when the test lets it."""

    name = "slow"
    shared = True

    def __init__(self) -> None:
        self.size = 10
        self.release = asyncio.Event()
        self.counts = 0

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None

    async def size_bytes(self) -> int:
        return self.size

    async def shared_size_bytes(self, max_age: float) -> int | None:
        self.counts += 1
        if self.counts > 1:
            await self.release.wait()
        return self.size

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_scrape_does_not_wait_for_a_count_of_the_shared_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first scrape waits for the size (there is none yet); later ones answer with the last size while
    # the next count runs in the background, so that no request waits for a scan of every entry.
    monkeypatch.setattr(cache_service, "SHARED_SIZE_SECONDS", 0.0)
    telemetry = Telemetry(Settings())
    store = _SlowSharedStore()
    cache = ResponseCache(store, telemetry.metrics, ttl=60)

    def gauge() -> float | None:
        return metric_value(render(telemetry.snapshot()), "cache_size_bytes")

    await cache.refresh_size()
    assert gauge() == 10
    store.size = 20
    await asyncio.wait_for(cache.refresh_size(), timeout=5)  # the count is blocked: the refresh is not
    await asyncio.wait_for(cache.refresh_size(), timeout=5)  # nor a second one, which starts no new count
    assert gauge() == 10
    assert store.counts == 2
    store.release.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if gauge() == 20:
            break
    assert gauge() == 20
    store.release.clear()
    await cache.refresh_size()  # a count under way when the service stops is cancelled, not left pending
    await cache.close()
    assert cache._size_reader is not None
    assert cache._size_reader.cancelled()
