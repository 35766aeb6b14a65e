"""A worker remembers verified keys for a few seconds: revocation and limit changes through the same
worker act at once, through another within the cache time; invalid keys are never remembered."""

from __future__ import annotations

import pytest

from agentic_backend.core.db import Database
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


async def test_revoked_through_another_worker_is_refused_within_the_cache_time(
    database: Database, clock: FakeClock
) -> None:
    this_worker = KeyService(database, clock, cache_seconds=5)
    other_worker = KeyService(database, clock, cache_seconds=5)
    created = await this_worker.create("k", "user")
    assert (await this_worker.verify(created.key))[1] == "ok"
    await other_worker.revoke(created.id)
    clock.advance(4.9)
    assert (await this_worker.verify(created.key))[1] == "ok", "remembered for the cache time"
    clock.advance(0.2)
    assert await this_worker.verify(created.key) == (None, "revoked")


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
