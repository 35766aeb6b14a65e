"""Both databases the service supports, for tests that need one: SQLite in a temporary folder, and a fresh
database on the machine's PostgreSQL (127.0.0.1:5432) for each test, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agentic_backend.core.db import Database, upgrade_async
from tests.helpers import missing

POSTGRES_ADMIN_DSN = os.environ.get("AGENTIC_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
        return
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(f"PostgreSQL at {POSTGRES_ADMIN_DSN} is not reachable ({exc}); .ci/run starts it")
    name = f"agentic_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated ``Database`` on each of the two, for tests below the HTTP layer."""
    await upgrade_async(database_url)
    db = Database(database_url)
    yield db
    await db.close()
