"""What SQLite's page size costs and saves: the log a query writes, its commit, and the ledger's scans.

    uv run python -m bench.sqlite_pages [--rounds 3] [--records 1500] [--rows 400000]

One process on one core (taskset -c 0 if it can), the service's own ``Database`` and ``Ledger`` on SQLite
files made by the migrations with 4 KiB pages (SQLite's default) and with 1 KiB pages (``PAGE_SIZE``, the
service's choice). Writes: one ledger record at a time (a client at concurrency 1: each query's row and
its rollup in a transaction of their own), the bytes of write-ahead log each appends and the loop
thread's CPU each costs. Reads: the usage API's queries (``Ledger.report`` and ``Ledger.groups``) on
``--rows`` ledger records spread over a month, 50 keys and 500 end users, each run 5 times (the median;
the files in the page cache, as on a service that serves them). Rows alternate over rounds; medians.
The one-connection tail that the smaller log removes is measured by ``bench.overhead`` (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop

from agentic_backend.billing.ledger import Ledger
from agentic_backend.core import db
from agentic_backend.core.clock import SystemClock
from agentic_backend.core.db import Database, upgrade_async
from agentic_backend.identity.service import KeyService
from bench.common import SERVER_CPU, median, table
from bench.group_commit import _entry

SIZES = (4096, 1024)
START = datetime(2026, 11, 1, tzinfo=UTC)


async def _make(path: Path, page_size: int) -> str:
    db.PAGE_SIZE = page_size  # read by the migrations' and the service's connections as they open
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA page_size").fetchone() == (page_size,)
    return url


async def _writes(url: str, wal: Path, records: int) -> tuple[float, float]:
    """(bytes of log, seconds of the loop thread's CPU) per record."""
    database = Database(url)  # the checkpointer not started: the log only grows
    try:
        key_id = (await KeyService(database, SystemClock()).create("bench", "user")).id
        ledger = Ledger(database)
        for number in range(200):  # warm-up: statement caches, the first pages
            await ledger.record(_entry(key_id, number))
        size, started = os.stat(wal).st_size, time.thread_time()
        for number in range(records):
            await ledger.record(_entry(key_id, number))
        cpu = time.thread_time() - started
        return (os.stat(wal).st_size - size) / records, cpu / records
    finally:
        await database.close()


def _fill(path: Path, rows: int) -> None:
    """``rows`` ledger records over a month, through SQLite directly (the service's path would take
    minutes), then the log copied in and emptied."""
    rng = random.Random(1)
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(usage_records)")]
        step = timedelta(days=30) / rows
        values = []
        for number in range(rows):
            record = {
                "id": None,
                "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "key_id": rng.randint(1, 50),
                "agent_type": "assistant",
                "provider": "openai",
                "model": rng.choice(("gpt-4o-mini", "gpt-4o")),
                "input_tokens": 20,
                "output_tokens": 50,
                "cost_nanodollars": 1_234,
                "cached": 0,
                "status": "success",
                "error_kind": None,
                "duration_seconds": 0.01,
                "created_at": (START + step * number).replace(tzinfo=None).isoformat(" "),
                "trace_id": None,
                "end_user": f"u{rng.randint(1, 500)}" if rng.random() < 0.3 else None,
                "tags": None,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
            }
            values.append(tuple(record[column] for column in columns))
        marks = ",".join("?" * len(columns))
        insert = f"INSERT INTO usage_records ({','.join(columns)}) VALUES ({marks})"  # noqa: S608 (the table's own columns)
        connection.executemany(insert, values)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _reads(ledger: Ledger) -> dict[str, Callable[[], Awaitable[object]]]:
    day = START + timedelta(days=9)
    return {
        "report: one day, every key": lambda: ledger.report(
            key_id=None, agent_type=None, status=None, since=day, until=day + timedelta(days=1), limit=50
        ),
        "report: one key's month": lambda: ledger.report(
            key_id=7, agent_type=None, status=None, since=START, until=None, limit=50
        ),
        "report: one end user": lambda: ledger.report(
            key_id=None, agent_type=None, status=None, since=None, until=None, limit=50, end_user="u42"
        ),
        "groups by end user: 3 days": lambda: ledger.groups(
            "end_user", key_id=None, since=day, until=day + timedelta(days=3), limit=100
        ),
        "groups by end user: all": lambda: ledger.groups(
            "end_user", key_id=None, since=None, until=None, limit=100
        ),
    }


async def _time_reads(url: str) -> dict[str, float]:
    database = Database(url)
    try:
        timings = {}
        for name, read in _reads(Ledger(database)).items():
            await read()  # the statement compiled, the pages read once
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                await read()
                runs.append(time.perf_counter() - started)
            timings[name] = median(runs)
        return timings
    finally:
        await database.close()


async def _run(folder: Path, rounds: int, records: int, rows: int) -> dict[str, dict[int, list[float]]]:
    results: dict[str, dict[int, list[float]]] = {}

    def keep(name: str, size: int, value: float) -> None:
        results.setdefault(name, {}).setdefault(size, []).append(value)

    full = {size: await _make(folder / f"full-{size}.db", size) for size in SIZES}
    for size in SIZES:
        _fill(folder / f"full-{size}.db", rows)
    for round_ in range(rounds):
        for size in SIZES:
            path = folder / f"writes-{size}-{round_}.db"
            log, cpu = await _writes(await _make(path, size), Path(f"{path}-wal"), records)
            keep("log a query (bytes)", size, log)
            keep("CPU a query (µs)", size, cpu * 1e6)
            for name, seconds in (await _time_reads(full[size])).items():
                keep(f"{name} (ms)", size, seconds * 1e3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=1500, help="ledger records written per row and round")
    parser.add_argument("--rows", type=int, default=400_000, help="ledger records the reads run over")
    args = parser.parse_args()
    with contextlib.suppress(OSError):  # one core is steadier, not required
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-pages-") as folder:
        results = uvloop.run(_run(Path(folder), args.rounds, args.records, args.rows))
    rows = []
    for name, by_size in results.items():
        large, small = median(by_size[4096]), median(by_size[1024])
        rows.append([name, f"{large:,.1f}", f"{small:,.1f}", f"{small / large:.2f}x"])
    print()
    print(f"SQLite page size, medians of {args.rounds} alternating rounds; reads over {args.rows:,} records")
    print(table(["", "4 KiB pages", "1 KiB pages", "1 KiB / 4 KiB"], rows))


if __name__ == "__main__":
    main()
