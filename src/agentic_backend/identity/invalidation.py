"""Telling every process at once that keys changed (a revocation, new limits), so that none serves a key
from its verification cache after the change.

``KeyService`` remembers verified keys to skip the database lookup, which is most of an authenticated
request's cost; a remembered key is used only while the *generation* it was verified under is still the
current one. Reading the generation must cost next to nothing on every request, so it is pushed, not
polled:

- ``FileGeneration`` (SQLite, and so one machine): an 8-byte counter in a file next to the database,
  memory-mapped by every worker (and the CLI); a change increments it under a file lock. Reading it is a
  memory read of a shared page.
- ``NotifiedGeneration`` (PostgreSQL, where replicas may be on other machines): a change sends
  ``NOTIFY`` in its own transaction (on the process's listening connection); every process LISTENs on a
  connection of its own and counts the notifications. Until that connection is up (or after it dropped)
  the generation is unknown and nothing is remembered: every request checks the database. ``bump`` waits
  until its own listener has heard the notification, which PostgreSQL sends to every listener at the
  same commit.

A verification reads the generation before its database lookup and remembers the key under that value:
if a revocation lands in between, the entry is stale from the start (the race where a verification that
began before a revocation re-cached the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from sqlalchemy import make_url

from agentic_backend.core.tasks import cancel

logger = logging.getLogger(__name__)

UNKNOWN = -1  # no entry is remembered under it
CHANNEL = "agentic_backend_keys"


class Generation(Protocol):
    def current(self) -> int:
        """The generation now (``UNKNOWN`` if it cannot be known)."""
        ...

    async def bump(self) -> None:
        """Keys changed: every process's remembered verifications are stale."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class FileGeneration:
    _FORMAT = struct.Struct("<q")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < self._FORMAT.size:
                    os.ftruncate(fd, self._FORMAT.size)  # zeros: generation 0
                self._map = mmap.mmap(fd, self._FORMAT.size)
            finally:
                os.close(fd)
        return self._map

    def current(self) -> int:
        value: int = self._FORMAT.unpack_from(self._mapped())[0]
        return value

    async def bump(self) -> None:
        mapped = self._mapped()
        fd = os.open(self._path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two processes bumping at once both count
            self._FORMAT.pack_into(mapped, 0, self._FORMAT.unpack_from(mapped)[0] + 1)
        finally:
            os.close(fd)

    async def start(self) -> None:
        self._mapped()

    async def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class NotifiedGeneration:
    _RECONNECT_SECONDS = 1.0

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn  # postgresql://... (asyncpg's form)
        self._connection: Any = None
        self._heard = 0
        self._listening = False
        self._changed = asyncio.Event()
        self._sending = asyncio.Lock()  # bumps sent on the listening connection, one at a time
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def current(self) -> int:
        return self._heard if self._listening else UNKNOWN

    def _on_notify(self, *_: object) -> None:
        self._heard += 1
        self._changed.set()

    def _on_lost(self, *_: object) -> None:
        self._listening = False
        self._heard += 1  # whatever was remembered before the loss is stale

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while not self._closed:
            if not self._listening:
                with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                    connection = await asyncpg.connect(self._dsn, timeout=5)
                    self._connection = connection  # at once: close() closes it even if cancelled below
                    await connection.add_listener(CHANNEL, self._on_notify)
                    connection.add_termination_listener(self._on_lost)
                    self._heard += 1
                    self._listening = True
            await asyncio.sleep(self._RECONNECT_SECONDS)
            connection = self._connection
            if self._listening and connection is not None and connection.is_closed():
                self._on_lost()

    async def bump(self) -> None:
        heard = self._heard
        self._changed.clear()
        await self._notify()
        if self._listening:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    while self._heard == heard:
                        await self._changed.wait()
                        self._changed.clear()

    async def _notify(self) -> None:
        """``NOTIFY`` on the listening connection (a connection may send what it listens for), one bump
        at a time since a connection runs one statement at a time; on a connection of its own while the
        listener is down, or if sending on it failed: a key created or revoked each time would otherwise
        cost a new connection (its handshake, and a backend started and stopped by the server)."""
        connection = self._connection
        if self._listening and connection is not None and not connection.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                async with self._sending:
                    await connection.execute(f"NOTIFY {CHANNEL}", timeout=5)
                return
        own = await asyncpg.connect(self._dsn, timeout=5)
        try:
            await own.execute(f"NOTIFY {CHANNEL}")
        finally:
            await own.close()

    async def close(self) -> None:
        self._closed = True
        await cancel(self._task)
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()
        self._listening = False


def generation_for(database_url: str) -> Generation:
    """The generation of the keys in this database: NOTIFY on PostgreSQL, a file beside SQLite's."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return NotifiedGeneration(url.set(drivername="postgresql").render_as_string(hide_password=False))
    database = url.database or ""
    if not database or database == ":memory:":
        return LocalGeneration()
    return FileGeneration(Path(database).with_name(Path(database).name + ".keys-generation"))


class LocalGeneration:
    """An in-memory SQLite database belongs to one process: a plain counter."""

    def __init__(self) -> None:
        self._value = 0

    def current(self) -> int:
        return self._value

    async def bump(self) -> None:
        self._value += 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
