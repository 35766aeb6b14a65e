"""The database: an async SQLAlchemy engine over SQLite (default, a file under the data folder) or
PostgreSQL (``AGENTIC_DATABASE_URL=postgresql+asyncpg://...``), and its Alembic migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

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


class Database:
    """An engine and its session factory. ``open()`` in the lifespan, ``close()`` at shutdown."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # One connection per process: SQLite allows one writer at a time, and its busy handler makes a
            # second writer sleep in steps of up to 100 ms, which showed as p99 latencies near a second
            # under 16 concurrent clients. Queued on one connection, each write waits microseconds instead.
            self.engine: AsyncEngine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping (a round trip per checkout): connections are recycled before servers drop them.
            self.engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

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
