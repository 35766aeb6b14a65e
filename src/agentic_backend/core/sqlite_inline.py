"""SQLite for SQLAlchemy's async engine, run on the event loop's thread instead of aiosqlite's.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on a worker thread and hands the result
back through the event loop: several thread switches per statement. With ``bench/agents_vs_litellm.py``'s
load on a 2-core machine, running the same statements inline instead raised a stateless agent query's
throughput by 18 % (452 to 537 requests/s) before any other change; the standard library's ``sqlite3``
answers these statements in microseconds, far less than a thread round trip. This module is the small
part of aiosqlite's interface that SQLAlchemy's ``sqlite+aiosqlite`` dialect uses, with coroutines that do
the work at once, and is passed to ``create_async_engine(..., async_creator=...)``; everything above it
(ORM, Core, the pool) is unchanged.

Running SQLite calls on the loop's thread is sound only for calls that cannot wait on another process:
the database is local, in WAL mode (readers never wait for a writer) with ``synchronous=NORMAL`` (a commit
appends to the WAL and does not wait for the disk), and one connection per process serialises this
process's writers. A write while another *process* (a worker of ``serve --workers N``, the CLI) holds the
write lock must wait, and SQLite's busy handler waits by sleeping, in steps of up to 100 ms: on the loop's
thread that held every request of the worker (bench/workers.py). So the connections have no busy timeout:
a call that finds the database locked (``SQLITE_BUSY``) returns at once, and is tried again after an
``asyncio.sleep`` (one loop turn, then 1 ms doubling to 25 ms), while the loop serves everything else, until
the timeout; the time it waited is recorded as a ``lock`` wait. Another worker holds the lock for a
transaction of a few statements, well under a millisecond, so most waits end at the first or second try.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_MAX_RETRY_DELAY = 0.025  # seconds between two tries of a locked call, at most


def _locked(exc: Exception) -> bool:
    """SQLITE_BUSY (and its extended codes but BUSY_SNAPSHOT, which waiting cannot cure: the transaction
    read a snapshot another process has since written past, and must start again); raised by sqlite3 or
    by SQLAlchemy, which wraps sqlite3's error."""
    exc = getattr(exc, "orig", None) or exc
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "database is locked" in str(exc)
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != 517  # 517: SQLITE_BUSY_SNAPSHOT


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor, connection: InlineConnection) -> None:
        self._cursor = cursor
        self._connection = connection

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
        await self._connection.call(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(
        self, sql: str, parameters: Iterable[Sequence[Any] | dict[str, Any]]
    ) -> InlineCursor:
        rows = parameters if isinstance(parameters, list) else list(parameters)  # may be run twice
        await self._connection.call(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


async def run(
    work: Callable[[], T], *, timeout: float, on_wait: Callable[[str, float], None] | None = None
) -> T:
    """``work()`` at once on the loop's thread; if it finds the database locked (by another process or
    connection), again after a pause that lets the loop go on (one loop turn, then 1 ms doubling to 25 ms),
    until it succeeds or ``timeout`` seconds have passed; ``on_wait`` hears how long it waited. ``work``
    must leave nothing behind when it fails so (a statement, or a transaction rolled back whole)."""
    try:
        return work()
    except Exception as exc:
        if not _locked(exc):
            raise
    started = time.perf_counter()
    deadline = started + timeout
    delay = 0.0
    try:
        while True:
            await asyncio.sleep(delay)
            try:
                return work()
            except Exception as exc:
                if not _locked(exc) or time.perf_counter() >= deadline:
                    raise
            delay = min(_MAX_RETRY_DELAY, max(0.001, delay * 2))
    finally:
        if on_wait is not None:
            on_wait("lock", time.perf_counter() - started)


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter calls on an ``aiosqlite.Connection``."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        timeout: float = 10.0,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection  # None once closed, as in aiosqlite
        self._timeout = timeout
        self._on_wait = on_wait

    async def call(self, work: Callable[[], T]) -> T:
        """``work()`` at once on the loop's thread; if another process holds the database's lock, again
        after a pause that lets the loop go on, until it succeeds or the timeout has passed."""
        return await run(work, timeout=self._timeout, on_wait=self._on_wait)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        await self.call(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """aiosqlite's forced close (SQLAlchemy calls it when it invalidates a connection); also ``close``."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def creator(
    path: Path | str, *, timeout: float = 10.0, on_wait: Callable[[str, float], None] | None = None
) -> Any:
    """An ``async_creator`` for ``create_async_engine``: connections to the SQLite file at ``path``; a call
    waits up to ``timeout`` seconds for another process's lock, and ``on_wait`` hears how long it did."""

    async def connect() -> InlineConnection:
        # Deferred transactions, sqlite3's default (what aiosqlite gives SQLAlchemy too). Opening does not
        # wait for a lock (timeout=0): the pragmas the engine runs next go through ``call`` like the rest.
        return InlineConnection(
            sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=False, timeout=0),
            timeout=timeout,
            on_wait=on_wait,
        )

    return connect
