"""What a shared rate limit costs per query: one hit of a key's requests-per-minute window in each store
the service offers, against the ``limits`` library's in-process memory store (what a per-process limiter
costs, and why it cannot be the answer: with N workers it admits N times the limit).

Rows alternate (the machine's noise hits all alike); each cell is the median over rounds of the mean over
``--hits`` sequential hits, spread over 100 keys with a limit no hit reaches.

    uv run python -m bench.ratelimit [--rounds 5] [--hits 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from agentic_backend.billing.ratelimit import DatabaseWindows, RedisWindows, Windows
from agentic_backend.core.db import Database, upgrade_async
from bench.common import table

REDIS_URL = os.environ.get("AGENTIC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class InProcess:
    """The baseline: limits' moving window in this process's memory."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, name: str, limit: int, seconds: int) -> bool:
        return await self._limiter.hit(RateLimitItemPerMinute(limit), name)


async def per_hit_microseconds(store: Windows | InProcess, hits: int, run: str) -> float:
    started = time.perf_counter()
    for i in range(hits):
        await store.hit(f"rpm:{run}:{i % 100}", 1_000_000, 60)
    return (time.perf_counter() - started) / hits * 1e6


async def main(rounds: int, hits: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(POSTGRES)
    pg_name = f"bench_rate_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{pg_name}"')
    folder = tempfile.TemporaryDirectory()
    sqlite_url = f"sqlite+aiosqlite:///{folder.name}/bench.db"
    pg_url = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{pg_name}"
    databases = []
    try:
        stores: dict[str, Windows | InProcess] = {"in-process (limits MemoryStorage), baseline": InProcess()}
        stores["Redis (limits moving window, redis-py)"] = RedisWindows(REDIS_URL, prefix=f"bench:{pg_name}")
        for label, url in (("SQLite (rate_hits table)", sqlite_url), ("PostgreSQL (advisory lock)", pg_url)):
            await upgrade_async(url)
            database = Database(url)
            databases.append(database)
            stores[label] = DatabaseWindows(database, time.time)
        results: dict[str, list[float]] = {label: [] for label in stores}
        for n in range(rounds):
            for label, store in stores.items():
                results[label].append(await per_hit_microseconds(store, hits, f"{n}"))
        base = statistics.median(results["in-process (limits MemoryStorage), baseline"])
        rows = []
        for label, values in results.items():
            median = statistics.median(values)
            rows.append([label, f"{median:.0f}", f"{median / base:.1f}x", f"{median - base:.0f}"])
        print(f"One rate-limit hit, {hits} per round, {rounds} rounds (median)\n")
        print(table(["store", "us per hit", "vs in-process", "added us per query"], rows))
    finally:
        for database in databases:
            await database.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        await admin.close()
        folder.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.hits))
