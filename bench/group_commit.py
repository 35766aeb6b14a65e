"""What the group commit costs a request on SQLite: through the asyncio engine, or the synchronous writer.

    uv run python -m bench.group_commit [--rounds 5] [--records 1500]

One process on one core (taskset -c 0 if it can), the service's own ``Database``, ``GroupCommit`` and
``Ledger`` on a SQLite file: each record is a ledger row and its share of the day's rollup, what every
agent query writes. Rows are "lone" (one request at a time: a client at concurrency 1, where each
request's transaction is its own) and "batch of 4" (four requests join one transaction), each through the
asyncio engine (every step of the transaction an awaited coroutine and a greenlet switch, the path before
session 25) and through the group commit's synchronous writer (core/db.py). Rows alternate over rounds;
the figure is the loop thread's CPU per record (``time.thread_time``), the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from agentic_backend.billing.ledger import Ledger, LedgerEntry
from agentic_backend.core.clock import SystemClock
from agentic_backend.core.db import Database, GroupCommit, upgrade_async
from agentic_backend.identity.service import KeyService
from bench.common import SERVER_CPU, median, table


def _entry(key_id: int, number: int) -> LedgerEntry:
    return LedgerEntry(
        request_id=uuid.uuid4().hex,
        key_id=key_id,
        agent_type="relay",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=10 + number % 7,
        output_tokens=20,
        cost_nanodollars=1_000,
        cached=False,
        status="success",
        error_kind=None,
        duration_seconds=0.01,
        created_at=datetime.now(UTC),
    )


async def _cpu_per_record(ledger: Ledger, key_id: int, together: int, records: int) -> float:
    async def one_round(number: int) -> None:
        await asyncio.gather(*(ledger.record(_entry(key_id, number)) for _ in range(together)))

    for number in range(200):  # warm-up: statement caches, the first pages
        await one_round(number)
    started = time.thread_time()
    for number in range(records // together):
        await one_round(number)
    return (time.thread_time() - started) / (records // together * together)


async def _run(folder: Path, rounds: int, records: int) -> dict[str, list[float]]:
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await upgrade_async(url)
    database = Database(url)
    writer_group = database.group
    asyncio_group = GroupCommit(database.engine)  # the same database, every transaction through asyncio
    try:
        key_id = (await KeyService(database, SystemClock()).create("bench", "user")).id
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            for together in (1, 4):
                for name, group in (("asyncio engine", asyncio_group), ("synchronous writer", writer_group)):
                    database.group = group
                    ledger = Ledger(database)  # registers its rollup's lock order with this group
                    row = f"{'lone' if together == 1 else 'batch of 4'}, {name}"
                    results.setdefault(row, []).append(
                        await _cpu_per_record(ledger, key_id, together, records)
                    )
        return results
    finally:
        database.group = writer_group
        await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1500, help="records per row and round")
    args = parser.parse_args()
    with contextlib.suppress(OSError):  # one core is steadier, not required
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    with tempfile.TemporaryDirectory(prefix="bench-group-commit-") as folder:
        results = uvloop.run(_run(Path(folder), args.rounds, args.records))
    rows = []
    for together in ("lone", "batch of 4"):
        through_asyncio = median(results[f"{together}, asyncio engine"])
        through_writer = median(results[f"{together}, synchronous writer"])
        rows.append(
            [
                together,
                f"{through_asyncio * 1e6:.0f}",
                f"{through_writer * 1e6:.0f}",
                f"{through_writer / through_asyncio:.2f}x",
            ]
        )
    print()
    print(f"CPU per ledger record (µs), medians of {args.rounds} alternating rounds of {args.records}")
    print(table(["", "asyncio engine", "synchronous writer", "writer / asyncio"], rows))


if __name__ == "__main__":
    main()
