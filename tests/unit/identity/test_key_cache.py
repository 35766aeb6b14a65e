"""A worker remembers verified keys for a few seconds; revocation and limit changes act at once on every
worker (through the keys' generation: a file beside SQLite, NOTIFY on PostgreSQL), including a
verification that was already reading the database when the key was revoked; invalid keys are never
remembered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import make_url

from agentic_backend.core.db import Database
from agentic_backend.identity.invalidation import CHANNEL, UNKNOWN, NotifiedGeneration
from agentic_backend.identity.service import KeyService
from tests.conftest import FakeClock


async def test_revoked_through_the_same_worker_is_refused_at_once(
    database: Database, clock: FakeClock
) -> None:
    keys = KeyService(database, clock, cache_seconds=5)
    created = await keys.create("k", "user")
    assert (await keys.verify(created.key))[1] == "ok"
    await keys.revoke(created.id)
    assert await keys.verify(created.key) == (None, "revoked")


async def started(keys: KeyService) -> KeyService:
    """The service with its generation listening (PostgreSQL connects a LISTEN connection)."""
    await keys.generation.start()
    deadline = time.monotonic() + 10
    while keys.generation.current() == UNKNOWN:
        assert time.monotonic() < deadline, "the generation never became known"
        await asyncio.sleep(0.01)
    return keys


async def refused_within(keys: KeyService, key: str, seconds: float) -> tuple[object, str]:
    deadline = time.monotonic() + seconds
    while (result := await keys.verify(key))[1] == "ok":
        assert time.monotonic() < deadline, f"still served {seconds} s after its revocation"
        await asyncio.sleep(0.001)
    return result


async def test_revoked_through_another_worker_is_refused_at_once(
    database: Database, clock: FakeClock
) -> None:
    this_worker = await started(KeyService(database, clock, cache_seconds=60))
    other_worker = await started(KeyService(database, clock, cache_seconds=60))
    try:
        created = await this_worker.create("k", "user")
        assert (await this_worker.verify(created.key))[1] == "ok"
        assert len(this_worker._verified) == 1  # remembered
        await other_worker.revoke(created.id)
        # SQLite: the shared file says so before revoke() returns. PostgreSQL: the NOTIFY reaches this
        # listener within milliseconds of the one revoke() waits for.
        assert await refused_within(this_worker, created.key, 0.2) == (None, "revoked")
        # New limits too.
        second = await this_worker.create("k2", "user")
        assert (await this_worker.verify(second.key))[0].rpm_limit is None  # type: ignore[union-attr]
        await other_worker.set_limits(second.id, budget=None, rpm=3)
        deadline = time.monotonic() + 0.2
        while (await this_worker.verify(second.key))[0].rpm_limit != 3:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the new limit did not arrive"
            await asyncio.sleep(0.001)
    finally:
        await this_worker.generation.close()
        await other_worker.generation.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_changes_notify_on_the_listening_connection_and_all_are_heard(
    database: Database, clock: FakeClock
) -> None:
    """A key change sends its NOTIFY on the connection its process listens on, not on a new connection each
    time; changes made at once take turns on it, and every one is heard."""
    keys = await started(KeyService(database, clock))
    generation = cast(NotifiedGeneration, keys.generation)
    senders: list[int] = []
    dsn = make_url(database.url).set(drivername="postgresql").render_as_string(hide_password=False)
    watcher = await asyncpg.connect(dsn, timeout=5)
    await watcher.add_listener(CHANNEL, lambda _connection, pid, _channel, _payload: senders.append(pid))
    try:
        before = generation.current()
        created = [await keys.create(f"k{i}", "user") for i in range(8)]  # creating one changes nothing
        await asyncio.gather(*(keys.revoke(key.id) for key in created))
        deadline = time.monotonic() + 5
        while len(senders) < len(created):
            assert time.monotonic() < deadline, f"heard {len(senders)} of {len(created)} changes"
            await asyncio.sleep(0.01)
        assert len(senders) == len(created)
        assert generation.current() >= before + len(created)
        listening = generation._connection  # the backend that sent them
        assert set(senders) == {listening.get_server_pid()}
    finally:
        await watcher.close()
        await keys.generation.close()


class _SlowReads:
    """An engine whose reads return only once ``release`` is set: the row is read, then the revocation
    commits, then the verification finishes (and would remember what it read)."""

    def __init__(self, engine: Any, release: asyncio.Event, reading: asyncio.Event) -> None:
        self._engine = engine
        self._release = release
        self._reading = reading

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        async with self._engine.connect() as connection:
            release, reading = self._release, self._reading

            class Connection:
                async def execute(self, *args: Any, **kwargs: Any) -> Any:
                    result = await connection.execute(*args, **kwargs)
                    reading.set()
                    await release.wait()
                    return result

            yield Connection()


async def test_a_verification_in_flight_during_a_revocation_is_not_remembered(
    database: Database, clock: FakeClock
) -> None:
    this_worker = await started(KeyService(database, clock, cache_seconds=60))
    other_database = Database(database.url)  # another process's connections
    other_worker = await started(KeyService(other_database, clock, cache_seconds=60))
    try:
        created = await this_worker.create("k", "user")
        release, reading = asyncio.Event(), asyncio.Event()
        slow = Database.__new__(Database)
        slow.__dict__.update(database.__dict__)
        slow.autocommit = _SlowReads(database.autocommit, release, reading)  # type: ignore[assignment]
        this_worker._db = slow
        verification = asyncio.create_task(this_worker.verify(created.key))
        await reading.wait()  # it read the key as valid
        await other_worker.revoke(created.id)
        await asyncio.sleep(0.05)  # PostgreSQL: this worker's listener hears the NOTIFY
        release.set()
        assert (await verification)[1] == "ok"  # it began before the revocation
        this_worker._db = database
        assert await this_worker.verify(created.key) == (None, "revoked")  # but was not remembered
    finally:
        await this_worker.generation.close()
        await other_worker.generation.close()
        await other_database.close()


async def test_limit_changes_reach_the_principal(database: Database, clock: FakeClock) -> None:
    keys = KeyService(database, clock, cache_seconds=5)
    created = await keys.create("k", "user")
    principal, _ = await keys.verify(created.key)
    assert principal is not None
    assert principal.rpm_limit is None
    await keys.set_limits(created.id, budget=3.0, rpm=7)
    principal, _ = await keys.verify(created.key)
    assert principal is not None
    assert (principal.rpm_limit, principal.monthly_budget_dollars) == (7, 3.0)


async def test_without_a_cache_every_check_reads_the_database(database: Database, clock: FakeClock) -> None:
    this_worker = KeyService(database, clock, cache_seconds=0)
    other_worker = KeyService(database, clock)
    created = await this_worker.create("k", "user")
    assert (await this_worker.verify(created.key))[1] == "ok"
    await other_worker.revoke(created.id)
    assert await this_worker.verify(created.key) == (None, "revoked")


async def test_invalid_keys_are_not_remembered_and_memory_is_bounded(
    database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyService(database, clock, cache_seconds=60)
    monkeypatch.setattr(KeyService, "_CACHE_MAX", 3)
    created = [await keys.create(f"k{i}", "user") for i in range(5)]
    for key in created:
        assert (await keys.verify(key.key))[1] == "ok"
    assert len(keys._verified) <= 3
    for guess in range(20):
        assert (await keys.verify(f"agb_{'x' * 16}_{guess}"))[1] == "unknown"
    assert len(keys._verified) <= 3
