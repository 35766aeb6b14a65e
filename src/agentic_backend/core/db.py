"""The database: an async SQLAlchemy engine over SQLite (default, a file under the data folder) or
PostgreSQL (``AGENTIC_DATABASE_URL=postgresql+asyncpg://...``), and its Alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Executable, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from agentic_backend.core import sqlite_inline

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Base(DeclarativeBase):
    """The declarative base of every table."""


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes concurrent writers (several workers)
    # wait for the lock instead of failing at once; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class GroupCommit:
    """Writes of many requests in one transaction (group commit).

    ``await write(...)`` queues statements with their parameters and returns once they are committed.
    Statements queued while a transaction is being written go together into the next one, each distinct
    statement as one executemany in the order it was first queued. Under load this turns one transaction
    per request (each several statements through SQLAlchemy, the dominant cost of an agent query on
    SQLite) into one per batch. A batch fails as a whole, so callers queue only statements that cannot
    fail on good input (conditional inserts, keyed updates).

    Like PostgreSQL's ``commit_delay``/``commit_siblings``: a writer says how many other requests that will
    write are running (``siblings``), and the transaction waits for them, yielding to the event loop, for
    at most ``delay`` seconds. Requests on a CPU-bound loop arrive within a few iterations and share the
    commit; one that waits on a model for seconds does not hold the others past the delay; a lone client
    never waits.
    """

    _BATCH = 500  # requests per transaction

    def __init__(self, engine: AsyncEngine, delay: float = 0.002) -> None:
        self._engine = engine
        self._delay = delay
        self._queue: list[tuple[Sequence[tuple[Executable, dict[str, Any]]], asyncio.Future[None]]] = []
        self._siblings = 0
        self._gathered = asyncio.Event()  # set once the queue holds every announced sibling
        self._writer: asyncio.Task[None] | None = None

    async def write(self, *writes: tuple[Executable, dict[str, Any]], siblings: int = 0) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((writes, done))
        self._siblings = max(self._siblings, siblings)
        if len(self._queue) > self._siblings:
            self._gathered.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _gather(self) -> None:
        if len(self._queue) > self._siblings:
            return
        self._gathered.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gathered.wait(), self._delay)

    async def _drain(self) -> None:
        while self._queue:
            await self._gather()
            self._siblings = 0
            batch, self._queue = self._queue[: self._BATCH], self._queue[self._BATCH :]
            grouped: dict[Executable, list[dict[str, Any]]] = {}
            for writes, _ in batch:
                for statement, parameters in writes:
                    grouped.setdefault(statement, []).append(parameters)
            try:
                async with self._engine.begin() as connection:
                    for statement, rows in grouped.items():
                        await connection.execute(statement, rows)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


class Database:
    """An engine and its session factory. ``open()`` in the lifespan, ``close()`` at shutdown."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # One connection per process: SQLite allows one writer at a time, and its busy handler makes a
            # second writer sleep in steps of up to 100 ms, which showed as p99 latencies near a second
            # under 16 concurrent clients. Queued on one connection, each write waits microseconds instead.
            # Statements run on the event loop's thread (core/sqlite_inline.py), not aiosqlite's.
            self.engine: AsyncEngine = create_async_engine(
                url,
                pool_size=1,
                max_overflow=0,
                pool_timeout=60,
                async_creator=sqlite_inline.creator(make_url(url).database or ":memory:"),
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping (a round trip per checkout): connections are recycled before servers drop them.
            self.engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.group = GroupCommit(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe to run concurrently: PostgreSQL takes an advisory lock,
    SQLite's write lock serialises the rest."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    # Alembic's async env runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(upgrade, url)
