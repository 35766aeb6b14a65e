"""SQLite for SQLAlchemy's async engine, run on the event loop's thread instead of aiosqlite's.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on a worker thread and hands the result
back through the event loop: several thread switches per statement. With ``bench/agents_vs_litellm.py``'s
load on a 2-core machine, running the same statements inline instead raised a stateless agent query's
throughput by 18 % (452 to 537 requests/s) before any other change; the standard library's ``sqlite3``
answers these statements in microseconds, far less than a thread round trip. This module is the small
part of aiosqlite's interface that SQLAlchemy's ``sqlite+aiosqlite`` dialect uses, with coroutines that do
the work at once, and is passed to ``create_async_engine(..., async_creator=...)``; everything above it
(ORM, Core, the pool) is unchanged.

Running SQLite calls on the loop's thread is sound here because each one is short: the database is local,
in WAL mode (readers never wait for a writer) with ``synchronous=NORMAL`` (a commit appends to the WAL and
does not wait for the disk), and one connection per process serialises this process's writers. Only a
write while another *process* (a worker of ``serve --workers N``) holds the write lock waits, for at most
that other transaction's few statements, under ``busy_timeout``; and a WAL checkpoint (every 1,000 pages)
syncs to disk once in a while.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(
        self, sql: str, parameters: Iterable[Sequence[Any] | dict[str, Any]]
    ) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter calls on an ``aiosqlite.Connection``."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection  # None once closed, as in aiosqlite

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """aiosqlite's forced close (SQLAlchemy calls it when it invalidates a connection); also ``close``."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def creator(path: Path | str) -> Any:
    """An ``async_creator`` for ``create_async_engine``: connections to the SQLite file at ``path``."""

    async def connect() -> InlineConnection:
        # Deferred transactions, sqlite3's default (what aiosqlite gives SQLAlchemy too).
        return InlineConnection(
            sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=False)
        )

    return connect
