"""SQLite's write-ahead log stays bounded under steady writes: the checkpointer copies it to the database
and makes it start over while the service keeps writing (core/db.py, ``WalCheckpointer``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from agentic_backend.billing.ledger import Ledger
from agentic_backend.core.db import PAGE_SIZE, Database, WalCheckpointer, upgrade_async
from agentic_backend.core.ids import new_request_id
from agentic_backend.identity.service import KeyService
from tests.conftest import FakeClock
from tests.unit.test_group_commit import entry


async def test_the_log_starts_over_while_a_steady_writer_goes_on(tmp_path: Path, clock: FakeClock) -> None:
    """One writer at a time, a millisecond apart, as one client's chat completions are: every PASSIVE
    checkpoint ends with newer frames in the log, so a log checkpointed only PASSIVE never started over
    and grew by every byte written (640 MB in 25 s of chat completions). Every write must still succeed:
    the second step holds writers off for a moment, and they wait for it."""
    url = f"sqlite+aiosqlite:///{tmp_path}/wal.db"
    await upgrade_async(url)
    database = Database(url)
    database._checkpointer = WalCheckpointer(str(tmp_path / "wal.db"), period=0.1)
    wal = tmp_path / "wal.db-wal"
    try:
        key = await KeyService(database, clock).create("k", "user")
        ledger = Ledger(database)
        before = wal.stat().st_size
        for number in range(-100, 0):  # what a transaction appends, before any checkpoint
            await ledger.record(entry(key.id, number))
        per_write = (wal.stat().st_size - before) / 100
        database.start()
        largest, written = 0, 0
        deadline = asyncio.get_running_loop().time() + 2.0
        while asyncio.get_running_loop().time() < deadline:
            await ledger.record(entry(key.id, written))  # a row and its rollup: several pages of log
            written += 1
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
            await asyncio.sleep(0.001)
    finally:
        await database.close()
    appended = written * per_write
    assert written > 300, "too few writes to tell"
    assert largest < appended / 3, f"the log reached {largest} bytes for {written} transactions"


async def test_every_write_is_kept_through_the_checkpoints(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/kept.db"
    await upgrade_async(url)
    database = Database(url)
    database._checkpointer = WalCheckpointer(str(tmp_path / "kept.db"), period=0.05)
    database.start()
    try:
        key = await KeyService(database, clock).create("k", "user")
        ledger = Ledger(database)

        async def writer(first: int) -> None:
            for number in range(first, first + 150):
                await ledger.record(entry(key.id, number))
                await asyncio.sleep(0.001)

        await asyncio.gather(*(writer(n * 1000) for n in range(4)))
    finally:
        await database.close()
    reopened = Database(url)
    try:
        totals = await Ledger(reopened).totals_by_key()
    finally:
        await reopened.close()
    assert sum(t.queries for t in totals) == 600


async def test_the_bulk_copy_runs_at_the_lowest_priority_and_the_locking_step_does_not(
    tmp_path: Path,
) -> None:
    """The bulk copy yields the core to the event loop; the step that holds the write lock must not, or
    every writer would wait for as long as the loop kept the core."""
    checkpointer = WalCheckpointer(str(tmp_path / "nice.db"))
    loop = asyncio.get_running_loop()

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    try:
        bulk = await loop.run_in_executor(checkpointer._bulk, niceness)
        restart = await loop.run_in_executor(checkpointer._restart, niceness)
    finally:
        await checkpointer.close()
    assert bulk == 19
    assert restart == os.getpriority(os.PRIO_PROCESS, 0)  # the service's own


async def _log_bytes_per_query(url: str, wal: Path, clock: FakeClock) -> float:
    database = Database(url)  # no checkpointer started: the log only grows
    try:
        key = await KeyService(database, clock).create("k", "user")
        ledger = Ledger(database)
        await ledger.record(entry(key.id, -1))  # the first pages of every table and index
        before = os.stat(wal).st_size
        for number in range(100):
            await ledger.record(entry(key.id, number))
        return (os.stat(wal).st_size - before) / 100
    finally:
        await database.close()


async def test_a_query_writes_a_few_kilobytes_of_log(tmp_path: Path, clock: FakeClock) -> None:
    """The log holds whole pages: with SQLite's default of 4 KiB, one query's transaction (its row, the
    row's indexes, the day's rollup) wrote 28 KB, and copying and syncing that was the one-connection
    tail. A new database is made with PAGE_SIZE pages, whoever creates the file: the migrations or the
    service's own connections."""
    url = f"sqlite+aiosqlite:///{tmp_path}/new.db"
    await upgrade_async(url)
    with sqlite3.connect(tmp_path / "new.db") as connection:
        assert connection.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)
    per_query = await _log_bytes_per_query(url, tmp_path / "new.db-wal", clock)
    assert per_query < 12_000, f"{per_query:.0f} bytes of log a query"


async def test_a_database_made_with_larger_pages_keeps_them_and_works(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A database from before keeps its page size: SQLite changes it only by rewriting the file, which
    the service does not do on its own (docs/operations.md says how)."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA page_size=4096")
        connection.execute("VACUUM")  # the file now exists with 4 KiB pages
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    per_query = await _log_bytes_per_query(url, tmp_path / "old.db-wal", clock)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA page_size").fetchone() == (4096,)
        assert connection.execute("SELECT count(*) FROM usage_records").fetchone() == (101,)
    assert per_query > 12_000  # what the smaller pages save, measured the same way


def _pages_in_log(wal: Path, start: int, page_size: int) -> set[int]:
    """The database pages of the log's frames from byte ``start`` on (a frame: 24 bytes of header, the
    page's number first, then the page)."""
    data = wal.read_bytes()[start:]
    frame = 24 + page_size
    return {int.from_bytes(data[at : at + 4], "big") for at in range(0, len(data) - frame + 1, frame)}


async def _pages_changed(folder: Path, clock: FakeClock, make_id: Callable[[], str]) -> int:
    """Distinct pages that 300 queries' transactions change in a ledger of 30,000 records: what the
    checkpoints copy and write back."""
    os.mkdir(folder)
    url = f"sqlite+aiosqlite:///{folder}/ids.db"
    await upgrade_async(url)
    database = Database(url)
    wal = folder / "ids.db-wal"
    try:
        key = await KeyService(database, clock).create("k", "user")
        ledger = Ledger(database)
        for first in range(0, 30_000, 1_000):  # the ledger as earlier queries left it
            earlier = [
                dataclasses.replace(entry(key.id, n), request_id=make_id())
                for n in range(first, first + 1_000)
            ]
            await database.group.write(*(write for e in earlier for write in ledger.writes(e)))
        start = os.stat(wal).st_size
        for number in range(300):
            await ledger.record(dataclasses.replace(entry(key.id, number), request_id=make_id()))
        return len(_pages_in_log(wal, start, PAGE_SIZE))
    finally:
        await database.close()


async def test_queries_change_few_pages_however_large_the_ledger(tmp_path: Path, clock: FakeClock) -> None:
    """A query's id is ordered by time (``new_request_id``), so the request-id index takes each new one on
    its last leaf, as it does the autoincremented row ids. With random ids (uuid4) every query rewrote a
    leaf of its own in an index as large as the ledger, and the checkpoints wrote them back all over the
    file: one client's p99 through the service went from 1.3 ms on a new database to 4.8-10.5 ms after
    240,000 queries."""
    ordered = await _pages_changed(tmp_path / "ordered", clock, new_request_id)
    scattered = await _pages_changed(tmp_path / "random", clock, lambda: uuid.uuid4().hex)
    assert scattered > 300, scattered  # a leaf of its own for nearly every query: what the test guards
    assert ordered < scattered / 3, (ordered, scattered)
