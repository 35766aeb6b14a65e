"""The database: an async SQLAlchemy engine over SQLite (default, a file under the data folder) or
PostgreSQL (``AGENTIC_DATABASE_URL=postgresql+asyncpg://...``), and its Alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Executable, create_engine, event, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from agentic_backend.core import sqlite_inline
from agentic_backend.core.errors import storage_failure
from agentic_backend.core.tasks import cancel

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Base(DeclarativeBase):
    """The declarative base of every table."""


# What a request waited for, and how long: ("pool" or "lock", seconds). Given by the application
# (monitoring's database_wait_seconds); core does not know the metric.
WaitObserver = Callable[[str, float], None]


def _ignore_wait(_: str, __: float) -> None:
    return None


class TimedPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, timing each checkout: the wait for a free connection (or for a new
    one to open) is the ``pool`` wait of ``database_wait_seconds``."""

    observer: WaitObserver | None = None  # set on the instance by Database

    def _do_get(self) -> Any:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            if self.observer is not None:
                self.observer("pool", time.perf_counter() - started)

    def recreate(self) -> TimedPool:
        pool = super().recreate()
        assert isinstance(pool, TimedPool)
        pool.observer = self.observer
        return pool


JOURNAL_LIMIT = 64 * 1024 * 1024  # bytes of SQLite's write-ahead log kept on disk when it starts over
# The page size of a new SQLite database (SQLite's default: 4096). Every query's transaction changes about
# six pages (its ledger row, four indexes, the day's rollup), and the log holds whole pages: 1 KiB pages
# write 8 KB of log a query instead of 27, take 82 µs of the loop's CPU instead of 95, and leave the
# checkpoints a third as much to copy and sync, which was the one-connection tail (p99 3.1 -> 1.7 ms
# through the service). Scans of many rows (the usage API's groupings over raw records) read more pages:
# up to 1.3x slower on 400,000 records (bench/sqlite_pages.py, docs/decisions.md). An existing database
# keeps the size it was created with.
PAGE_SIZE = 1024


def sqlite_page_size(dbapi_connection: Any, _: Any = None) -> None:
    """A connect listener: ``PAGE_SIZE`` for a database this connection creates. Whoever creates the file
    (the migrations, or the service's own connections) must set it before anything writes: once the file
    exists, a database keeps its page size, and this has no effect."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    sqlite_page_size(dbapi_connection)
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite. No busy timeout
    # on these connections: a statement that finds another process holding the lock is tried again after
    # a pause that lets the event loop go on (core/sqlite_inline.py), instead of sleeping on it.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=0")
    # No checkpoint at commit: it copies the WAL into the database and syncs the disk on the committing
    # call, on the event loop (6 ms, past 100 ms under load). Database.start() checkpoints in a thread.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    # When the log starts over (WalCheckpointer), its file is cut back to this: a burst's log does not
    # keep its disk space.
    cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_writer(path: str) -> Engine:
    """A synchronous engine with one connection to the SQLite file at ``path``, set up as the asyncio
    engine's (the same pragmas, no busy timeout: a locked database is waited for by
    ``sqlite_inline.run``), used on the event loop's thread only."""
    engine = create_engine(
        "sqlite://",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0,  # one transaction at a time (GroupCommit._drain): the connection is always free
        creator=lambda: sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False, timeout=0),
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# One statement and its parameters, as queued for the group commit.
Write = tuple[Executable, dict[str, Any]]


class _Plan:
    """A statement compiled once for sqlite3's own ``executemany``: its SQL, and for each of its positional
    parameters the row's key (or the statement's own value) and the column type's conversion.

    ``Connection.execute`` does the same work for every call: it looks the compiled form up in its cache,
    builds an execution context, converts each row's parameters through it and fires the statement events.
    For a lone request's ledger row and rollup that costs about as much as SQLite's own work for them
    (``bench.service_instructions``). A statement this cannot run exactly as SQLAlchemy would (a Python-side
    column default to compute, an expanding ``IN``, a parameter no row gives) has no plan and goes through
    ``Connection.execute``."""

    __slots__ = ("_binds", "sql")

    def __init__(self, sql: str, binds: list[tuple[str | None, Any, Any]]) -> None:
        self.sql = sql
        self._binds = binds  # (the row's key, or None for the statement's own value; that value; conversion)

    @classmethod
    def of(cls, statement: Executable, keys: frozenset[str], engine: Engine) -> _Plan | None:
        dialect = engine.dialect
        try:
            compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
        except sa_exc.SQLAlchemyError:
            return None  # SQLAlchemy's own execution raises it, with its message
        if (
            not compiled.positional
            or compiled.positiontup is None
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
        ):
            return None
        binds: list[tuple[str | None, Any, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                binds.append((name, None, convert))
            elif bind.callable is None and not bind.required:
                binds.append((None, bind.value, convert))
            else:
                return None
        return cls(compiled.string, binds)

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        binds = self._binds
        out = []
        for row in rows:
            values = []
            for key, value, convert in binds:
                value = row[key] if key is not None else value
                values.append(value if convert is None else convert(value))
            out.append(tuple(values))
        return out


class GroupCommit:
    """Writes of many requests in one transaction (group commit).

    ``await write(...)`` queues statements with their parameters and returns once they are committed.
    Statements queued while a transaction is being written go together into the next one, each distinct
    statement as one executemany in the order it was first queued. Under load this turns one transaction
    per request (each several statements through SQLAlchemy, the dominant cost of an agent query on
    SQLite) into one per batch. If a batch fails for anything but the storage itself, each of its
    requests is retried alone, so that one bad statement fails only its own request.

    Before each transaction the writer yields to the event loop until a turn passes in which nothing new
    was queued (at most ``_GATHER`` turns): requests that were already running reach their write and join
    the batch. Without it a loop where every statement completes at once (SQLite, core/sqlite_inline.py)
    wrote almost every request alone: under 16 clients, batches of 1.07 requests against 2-4 with it, and
    a third more agent queries per second. A time-based wait (PostgreSQL's ``commit_delay``) measured no
    better and adds latency; a lone client passes one idle turn.

    On SQLite the transactions go through ``sqlite``: a synchronous engine with a connection of its own,
    whose transaction runs at once on the loop's thread (one that finds the database locked is rolled back
    and tried again after a pause, as every SQLite call is: core/sqlite_inline.py). Through the asyncio
    engine each step of a transaction (checkout, cursor, statement, commit, the pool's reset) is an awaited
    coroutine and a greenlet switch: ``bench.group_commit`` measures what that costs a lone request. It
    also no longer waits for the asyncio engine's one connection while a reader holds it.
    """

    _BATCH = 500  # requests per transaction
    _GATHER = 4  # event-loop turns the writer waits, at most, for running requests to join
    _PLANS = 256  # statements compiled for sqlite3 kept at once (the service's writes are a handful)

    def __init__(
        self,
        engine: AsyncEngine,
        sqlite: Engine | None = None,
        *,
        autocommit: AsyncEngine | None = None,
        timeout: float = 10.0,
        on_wait: WaitObserver | None = None,
    ) -> None:
        self._engine = engine
        self._autocommit = autocommit  # an engine whose connections commit each statement, or None
        self._sqlite = sqlite
        self._timeout = timeout  # how long a SQLite transaction waits for another writer's lock
        self._on_wait = on_wait
        self._queue: list[tuple[Sequence[Write], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._orders: dict[Executable, Callable[[Any], tuple[Any, ...]]] = {}
        self._plans: dict[tuple[Executable, frozenset[str]], _Plan | None] = {}
        # The SQLite writer's connection, checked out once and kept: a checkout and a check-in per
        # transaction (the pool's queue, its events, the reset's rollback) cost a lone request 4 % of its
        # instructions (bench.service_instructions). One transaction at a time uses it (``_drain``); one
        # that fails is rolled back by ``begin()``'s block, and one that loses the connection (invalidated)
        # gets a new one from the pool at its next use.
        self._held: Connection | None = None

    @property
    def engine(self) -> Engine:
        """The engine whose connections write the transactions (for its events: commits, statements)."""
        return self._sqlite or self._engine.sync_engine

    def order(self, statement: Executable, key: Callable[[Any], tuple[Any, ...]]) -> None:
        """Execute ``statement``'s rows of a batch sorted by ``key``: rows it locks (upserted counters) are
        then locked in one order by every process, which rules out deadlocks between them."""
        self._orders[statement] = key

    async def write(self, *writes: Write) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((writes, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _gather(self) -> None:
        for _ in range(self._GATHER):
            queued = len(self._queue)
            await asyncio.sleep(0)
            if len(self._queue) == queued:
                return

    async def _drain(self) -> None:
        while self._queue:
            await self._gather()
            batch, self._queue = self._queue[: self._BATCH], self._queue[self._BATCH :]
            try:
                await self._commit(batch)
            except Exception as exc:
                if len(batch) > 1 and storage_failure(exc) is None:
                    # One request's statement failed (a constraint, bad data): the others must not fail
                    # with it. Each is retried in a transaction of its own, so only the culprit fails.
                    # A storage failure (database down) fails the batch at once: retrying 500 requests
                    # one by one against a dead server would only delay every answer.
                    for request in batch:
                        await self._commit_alone(request)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _commit(self, batch: Sequence[tuple[Sequence[Write], asyncio.Future[None]]]) -> None:
        grouped: dict[Executable, list[dict[str, Any]]] = {}
        for writes, _ in batch:
            for statement, parameters in writes:
                grouped.setdefault(statement, []).append(parameters)
        if self._sqlite is not None:
            await sqlite_inline.run(
                lambda: self._sqlite_transaction(grouped), timeout=self._timeout, on_wait=self._on_wait
            )
            return
        if len(grouped) == 1 and self._autocommit is not None:
            # One statement (on PostgreSQL, a batch of answered queries: billing/ledger.py): on its own in
            # autocommit, it is one round trip, not BEGIN, the statement and COMMIT. It is as atomic: a
            # statement is, and so is asyncpg's executemany of its rows (one Sync for them all).
            ((statement, rows),) = grouped.items()
            async with self._autocommit.connect() as connection:
                await connection.run_sync(
                    lambda sync: sync.execute(statement, self._in_order(statement, rows))
                )
            return
        async with self._engine.connect() as connection:
            await connection.run_sync(self._transaction, grouped)

    def _sqlite_transaction(self, grouped: dict[Executable, list[dict[str, Any]]]) -> None:
        connection = self._held
        if connection is None or connection.closed:
            assert self._sqlite is not None
            connection = self._held = self._sqlite.connect()
        with connection.begin():
            cursor: Any = None
            for statement, rows in grouped.items():
                rows = self._in_order(statement, rows)
                plan = self._plan(statement, rows)
                if plan is None:
                    connection.execute(statement, rows)
                    continue
                if cursor is None:
                    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                parameters = plan.parameters(rows)
                try:
                    cursor.executemany(plan.sql, parameters)
                except sqlite3.Error as exc:  # as SQLAlchemy raises it (errors.py classifies it)
                    raise sa_exc.DBAPIError.instance(plan.sql, parameters, exc, sqlite3.Error) from exc

    def _in_order(self, statement: Executable, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = self._orders.get(statement)
        return sorted(rows, key=key) if key is not None else rows

    def _plan(self, statement: Executable, rows: Sequence[dict[str, Any]]) -> _Plan | None:
        keys = rows[0].keys()
        if any(row.keys() != keys for row in rows):
            return None  # rows that differ: SQLAlchemy says what is missing
        slot = (statement, frozenset(keys))
        try:
            return self._plans[slot]
        except KeyError:
            if len(self._plans) >= self._PLANS:
                self._plans.clear()  # statements built per call would otherwise grow it for good
            assert self._sqlite is not None
            plan = self._plans[slot] = _Plan.of(statement, slot[1], self._sqlite)
            return plan

    def _transaction(self, connection: Connection, grouped: dict[Executable, list[dict[str, Any]]]) -> None:
        """The batch's transaction, run as one synchronous function: each awaited step of SQLAlchemy's
        asyncio layer (begin, every statement, commit) starts a greenlet of its own, about 7 µs of CPU
        each (mostly mapping and unmapping its 16 KB frame stack); run_sync starts one for all of them."""
        with connection.begin():
            for statement, rows in grouped.items():
                connection.execute(statement, self._in_order(statement, rows))

    def close(self) -> None:
        """Returns the SQLite writer's connection to its pool (at shutdown, before the engine's disposal)."""
        if self._held is not None:
            self._held.close()
            self._held = None

    async def _commit_alone(self, request: tuple[Sequence[Write], asyncio.Future[None]]) -> None:
        done = request[1]
        try:
            await self._commit([request])
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)


class WalCheckpointer:
    """Checkpoints a SQLite database's write-ahead log in a thread, every 5 s while it is written to,
    instead of at the commit that passes SQLite's threshold (the automatic checkpoint, turned off on the
    service's connections), and makes the log start over.

    A log only starts over when a writer begins while every frame in it has been copied to the database.
    A PASSIVE checkpoint never waits for anyone, so under steady writes frames are always appended while it
    copies, and the log never started over: 640 MB after 25 s of one client's chat completions, growing for
    as long as the load lasted, and every read searching a larger index. So each turn copies in two steps:
    PASSIVE first, the bulk, blocking no one (again while its passes find many new frames: ``_turn``);
    then RESTART for the frames written meanwhile, which holds off writers (they retry,
    core/sqlite_inline.py) for the few pages left and the syncs, and waits up to ``_WAIT`` for readers to
    leave the log; the next writer then starts it over, and the service's connections cut its file to
    ``JOURNAL_LIMIT`` (``_sqlite_pragmas``). With several workers each runs one; one that finds another
    checkpointing skips that turn."""

    _PERIOD = 5.0  # seconds between two checkpoints, at most: the log holds about this long of writes
    _WAIT = 0.5  # seconds the second step waits for the write lock and for readers, at most
    # New frames (a page each: 1 MiB, 4 MiB in a database of 4-KiB pages) few enough to leave to the
    # locking step.
    _FEW = 1024
    _PASSES = 3  # extra PASSIVE passes a turn, at most, to get there

    def __init__(self, path: str, *, period: float = _PERIOD) -> None:
        self._path = path
        self._wal = Path(path + "-wal")
        self._period = period
        self._task: asyncio.Task[None] | None = None
        self._seen = 0.0  # the log's modification time at the last checkpoint
        # The bulk copy in a thread of its own at the lowest priority: its CPU (20-30 ms of the 100 ms a
        # checkpoint took after 5 s of one client's chat completions) shared a core with the event loop and
        # slowed every request of that tenth of a second about twofold; at nice 19 it takes what the loop
        # leaves. The second step holds the write lock, so it runs at the service's own priority: a
        # low-priority thread holding it would stall every writer for as long as the loop kept the core.
        self._bulk = ThreadPoolExecutor(1, "sqlite-checkpoint", initializer=_lowest_priority)
        self._restart = ThreadPoolExecutor(1, "sqlite-checkpoint-restart")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._period)
            try:
                modified = self._wal.stat().st_mtime if self._wal.exists() else 0.0
                if modified != self._seen:
                    await self._turn(loop)
                    self._seen = modified
            except Exception:
                logger.warning("could not checkpoint the SQLite write-ahead log", exc_info=True)

    async def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """PASSIVE passes until one finds few new frames (at most ``_PASSES`` more), then RESTART for the
        rest. The passes keep the locking step short: after writes that outpaced the copy (a saturated
        core, the copy at nice 19), a single RESTART copied the backlog holding the write lock."""
        frames = await loop.run_in_executor(self._bulk, self.checkpoint, "PASSIVE")
        if frames < 0:
            return  # another worker is checkpointing
        for _ in range(self._PASSES):
            again = await loop.run_in_executor(self._bulk, self.checkpoint, "PASSIVE")
            if again < 0 or again - frames <= self._FEW:  # written while the last pass copied
                break
            frames = again
        await loop.run_in_executor(self._restart, self.checkpoint, "RESTART")

    def checkpoint(self, mode: str) -> int:
        """One step: ``PASSIVE`` (copy what it can, wait for no one) or ``RESTART`` (copy the rest, then
        wait up to ``_WAIT`` for readers to leave the log, so that the next writer starts it over). The
        frames the log held when it began, or -1 if another checkpoint was running."""
        connection = sqlite3.connect(self._path, timeout=self._WAIT)
        try:
            busy, frames, _ = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return -1 if busy else int(frames)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return -1
        finally:
            connection.close()

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        self._bulk.shutdown(wait=False)
        self._restart.shutdown(wait=False)


def _lowest_priority() -> None:
    """Nice 19 for the calling thread alone (Linux: a thread's id is a process id to setpriority)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Database:
    """An engine and its session factory. ``start()`` in the lifespan, ``close()`` at shutdown."""

    def __init__(self, url: str, *, timeout: float = 10.0, on_wait: WaitObserver | None = None) -> None:
        self.url = url
        self.observe_wait: WaitObserver = on_wait or _ignore_wait
        if url.startswith("sqlite"):
            # One connection per process: SQLite allows one writer at a time, and its busy handler makes a
            # second writer sleep in steps of up to 100 ms, which showed as p99 latencies near a second
            # under 16 concurrent clients. Queued on one connection, each write waits microseconds instead.
            # Statements run on the event loop's thread (core/sqlite_inline.py), not aiosqlite's; one that
            # must wait for another process's lock waits without holding the loop.
            self.engine: AsyncEngine = create_async_engine(
                url,
                poolclass=TimedPool,
                pool_size=1,
                max_overflow=0,
                pool_timeout=60,
                async_creator=sqlite_inline.creator(
                    make_url(url).database or ":memory:", timeout=timeout, on_wait=self.observe_wait
                ),
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping (a round trip per checkout): connections are recycled before servers drop them.
            # ``timeout`` bounds asyncpg's connection attempt and each statement (a server that hangs keeps
            # its sockets open: without it, requests would wait for good) and the wait for a free connection.
            self.engine = create_async_engine(
                url,
                poolclass=TimedPool,
                pool_size=10,
                max_overflow=20,
                pool_recycle=1800,
                pool_timeout=timeout,
                connect_args={"timeout": timeout, "command_timeout": timeout},
            )
        # The same pool, for one statement on its own: a read through ``connect()``, or a write that stands
        # alone through ``begin()``. On PostgreSQL its connections run in autocommit, so the statement is
        # one round trip where a transaction is three (BEGIN, the statement, the ROLLBACK or COMMIT), and
        # ``begin()``'s BEGIN and COMMIT are no-ops: each round trip is a wait that lets the other workers
        # on a core run and take the caches (bench.workers). A read loses nothing by it: READ COMMITTED
        # gives each statement of a transaction its own snapshot anyway. On SQLite: the engine itself.
        self.autocommit: AsyncEngine = (
            self.engine
            if url.startswith("sqlite")
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        pool = self.engine.sync_engine.pool
        assert isinstance(pool, TimedPool)
        pool.observer = self.observe_wait
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        path = make_url(url).database if url.startswith("sqlite") else None
        file = path if path and path != ":memory:" else None  # an in-memory database is one connection's
        # The group commit's own connection to a SQLite file.
        self._sqlite_writer = _sqlite_writer(file) if file is not None else None
        self.group = GroupCommit(
            self.engine,
            self._sqlite_writer,
            autocommit=None if self.dialect == "sqlite" else self.autocommit,
            timeout=timeout,
            on_wait=self.observe_wait,
        )
        self._checkpointer = WalCheckpointer(file) if file is not None else None

    def start(self) -> None:
        """Background upkeep (SQLite: the log's checkpoints); inside a running event loop."""
        if self._checkpointer is not None:
            self._checkpointer.start()

    async def warm_up(self, connections: int = 4) -> None:
        """Open up to ``connections`` pooled connections now (SQLite: its one): a new PostgreSQL connection
        costs a handshake and SQLAlchemy's set-up queries, which a burst of first requests would pay for
        all at once."""
        count = 1 if self.dialect == "sqlite" else connections

        async def touch() -> None:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                await asyncio.sleep(0)  # hold it until every other has been asked for

        await asyncio.gather(*(touch() for _ in range(count)))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        await self.engine.dispose()
        self.group.close()
        if self._sqlite_writer is not None:
            self._sqlite_writer.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe to run concurrently: PostgreSQL takes an advisory lock,
    SQLite's write lock serialises the rest."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    # Alembic's async env runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(upgrade, url, revision)
