"""The database's group commit: concurrent writers share transactions, each returns only once its rows
are committed, a statement that fails fails only its own writer (the batch's others are retried alone)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from agentic_backend.billing.ledger import Ledger, LedgerEntry
from agentic_backend.billing.models import UsageRecord, UsageRollup
from agentic_backend.core.db import Database
from agentic_backend.identity.service import KeyService
from tests.conftest import FakeClock


def entry(key_id: int, number: int) -> LedgerEntry:
    return LedgerEntry(
        request_id=f"{number:032x}",
        key_id=key_id,
        agent_type="assistant",
        provider="sim",
        model="sim-1",
        input_tokens=10,
        output_tokens=20,
        cost_nanodollars=1_000,
        cached=False,
        status="success",
        error_kind=None,
        duration_seconds=0.001,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def rows(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(UsageRecord))).scalar_one())


def transactions(database: Database) -> list[int]:
    """Each transaction the group commit runs from now on: a commit, or on PostgreSQL a batch of one
    statement run alone in autocommit (its own transaction, one round trip)."""
    seen: list[int] = []
    event.listen(database.group.engine, "commit", lambda _: seen.append(1))

    def alone(connection: Connection, *_: object) -> None:
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            seen.append(1)

    event.listen(database.group.engine, "before_cursor_execute", alone)
    return seen


async def test_concurrent_writers_share_transactions_and_see_their_rows(
    database: Database, clock: FakeClock
) -> None:
    key = await KeyService(database, clock).create("k", "user")
    commits = transactions(database)
    ledger = Ledger(database)

    async def query(number: int) -> int:
        await asyncio.sleep(0)  # requests in flight at once, as under a server's load
        await ledger.record(entry(key.id, number))
        return await rows(database)  # committed before record() returned

    seen = await asyncio.gather(*(query(n) for n in range(64)))
    assert await rows(database) == 64
    assert min(seen) >= 1
    assert len(commits) < 64 / 4, f"{len(commits)} transactions for 64 writers"


async def test_one_failing_statement_fails_only_its_own_request(database: Database, clock: FakeClock) -> None:
    key = await KeyService(database, clock).create("k", "user")
    ledger = Ledger(database)
    commits = transactions(database)
    bad = (insert(UsageRecord), {"request_id": "x"})  # NOT NULL columns missing: its transaction fails

    async def good(number: int) -> None:
        await asyncio.sleep(0)
        await ledger.record(entry(key.id, number))

    async def failing() -> None:
        await asyncio.sleep(0)
        await database.group.write(bad)

    results = await asyncio.gather(
        *(good(n) for n in range(5)), failing(), *(good(n) for n in range(5, 10)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1, results
    assert results[5] is failures[0]
    assert await rows(database) == 10
    assert len(commits) >= 10  # the batch failed together, then each request was retried alone
    await ledger.record(entry(key.id, 11))  # the next batch is not affected
    assert await rows(database) == 11


def rollup_orders(database: Database) -> list[list[int]]:
    """The key ids of the rollup rows each transaction upserts, in the order the database received them:
    on PostgreSQL from SQLAlchemy's statement events; on SQLite, whose writer hands its statements to
    sqlite3 directly, from SQLite's own trace of the group commit's connection (each row's statement, with
    its values, between BEGIN and COMMIT)."""
    executed: list[list[int]] = []
    if database.dialect != "sqlite":

        def capture(
            _conn: object, _cursor: object, statement: str, parameters: Any, _context: object, many: bool
        ) -> None:
            if "usage_rollups" in statement and many:
                executed.append(
                    [row[0] if isinstance(row, tuple | list) else row["key_id"] for row in parameters]
                )

        event.listen(database.group.engine, "before_cursor_execute", capture)
        return executed

    def trace(sql: str) -> None:
        if sql.startswith("BEGIN"):
            executed.append([])
        elif "INSERT INTO usage_rollups" in sql:
            match = re.search(r"\(([^)]*)\) VALUES \(([^)]*)\)", sql)
            assert match is not None, sql
            row = dict(zip(match[1].split(", "), match[2].split(", "), strict=True))
            executed[-1].append(int(row["key_id"]))

    raw = database.group.engine.raw_connection()  # the writer's one connection, returned to its pool
    try:
        raw.dbapi_connection.set_trace_callback(trace)  # type: ignore[union-attr]
    finally:
        raw.close()
    return executed


async def test_rollup_rows_are_upserted_in_one_order_whatever_the_queue(
    database: Database, clock: FakeClock
) -> None:
    """Two workers or replicas whose batches upsert the same rollup rows in opposite orders could deadlock
    on PostgreSQL; each batch upserts them sorted by key, so every process locks them in one order."""
    keys = KeyService(database, clock)
    ids = [(await keys.create(f"k{i}", "user")).id for i in range(8)]
    ledger = Ledger(database)
    executed = rollup_orders(database)

    async def one(key_id: int, n: int) -> None:
        await asyncio.sleep(0)
        await ledger.record(entry(key_id, n))

    await asyncio.gather(*(one(key_id, n) for n, key_id in enumerate(reversed(ids))))
    executed = [order for order in executed if order]
    assert executed, "the batch upserted its rollups"
    assert all(order == sorted(order) for order in executed), executed
    assert sum(len(order) for order in executed) == len(ids)
    assert len(executed) < len(ids), "the rollups were upserted together, in shared transactions"


async def test_a_batch_commits_while_a_reader_holds_a_connection(
    database: Database, clock: FakeClock
) -> None:
    """On SQLite the group commit writes through a connection of its own: a reader holding the asyncio
    engine's one connection (a summary, a report) does not hold up the writes of every other request."""
    key = await KeyService(database, clock).create("k", "user")
    ledger = Ledger(database)
    async with database.engine.connect() as reader:
        await reader.execute(select(func.count()).select_from(UsageRecord))  # a read transaction, open
        await asyncio.wait_for(ledger.record(entry(key.id, 1)), timeout=5)
        assert (await reader.execute(select(func.count()).select_from(UsageRecord))).scalar_one() == 1


async def test_a_failing_row_fails_as_sqlalchemy_raises_it(database: Database, clock: FakeClock) -> None:
    """On SQLite the writer hands the ledger's statements to sqlite3 itself: a row the database refuses
    (here a key that does not exist) still fails its request with SQLAlchemy's exception, which the error
    handlers classify, and nothing of it is kept."""
    key = await KeyService(database, clock).create("k", "user")
    ledger = Ledger(database)
    with pytest.raises(sa_exc.IntegrityError):
        await ledger.record(entry(key.id + 1000, 1))
    assert await rows(database) == 0
    await ledger.record(entry(key.id, 2))
    assert await rows(database) == 1


def sent_to_postgresql(database: Database) -> tuple[list[str], list[str]]:
    """From now on: the transaction control every pooled connection sends PostgreSQL (asyncpg's query
    loggers see BEGIN and COMMIT, not prepared statements), and the statements SQLAlchemy executes."""
    control: list[str] = []
    statements: list[str] = []

    def log(record: Any) -> None:
        control.append(record.query)

    def checkout(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.driver_connection.add_query_logger(log)

    event.listen(database.engine.sync_engine, "checkout", checkout)
    event.listen(database.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return control, statements


async def test_an_answered_query_is_written_in_one_round_trip(database: Database, clock: FakeClock) -> None:
    """A query's ledger row and its day's rollup: on PostgreSQL one statement (the row's insert as a CTE of
    the rollup's upsert), which a batch of answered queries alone sends without BEGIN or COMMIT."""
    key = await KeyService(database, clock).create("k", "user")
    ledger = Ledger(database)
    control, statements = sent_to_postgresql(database) if database.dialect == "postgresql" else ([], [])
    await ledger.record(entry(key.id, 1))
    await ledger.record(entry(key.id, 2))
    sent = [*control, *statements]
    async with database.engine.connect() as connection:
        rollup = (await connection.execute(select(UsageRollup.queries, UsageRollup.input_tokens))).all()
    assert await rows(database) == 2
    assert [tuple(r) for r in rollup] == [(2, 20)]
    if database.dialect == "postgresql":
        assert len(sent) == 2, sent
        assert all("usage_records" in query and "usage_rollups" in query for query in sent), sent


async def test_a_bad_row_in_a_batch_of_one_statement_leaves_no_other_row_twice(
    database: Database, clock: FakeClock
) -> None:
    """A batch of answered queries alone (on PostgreSQL one executemany, without a transaction around it)
    fails as a whole when one row is bad: the other rows are not left half written, so that retrying each
    alone writes each once, and only the bad one fails."""
    key = await KeyService(database, clock).create("k", "user")
    ledger = Ledger(database)
    bad = entry(key.id + 1_000, 99)  # no such key: the foreign key refuses the row

    async def one(item: LedgerEntry) -> None:
        await asyncio.sleep(0)
        await ledger.record(item)

    items = [entry(key.id, n) for n in range(4)] + [bad] + [entry(key.id, n) for n in range(4, 8)]
    results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    assert [isinstance(r, sa_exc.IntegrityError) for r in results] == [False] * 4 + [True] + [False] * 4
    async with database.engine.connect() as connection:
        rollup = (await connection.execute(select(func.sum(UsageRollup.queries)))).scalar_one()
    assert await rows(database) == 8
    assert rollup == 8
