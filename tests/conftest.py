"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from tests.databases import database, database_url  # noqa: F401  (fixtures)

ADMIN_KEY = "test-admin-key-0123456789-abcdefghijklmnopqrstuvwxyz"

# In CI every property test draws the same examples each run (derandomize), so that a red CI is always a
# real, reproducible bug; on a laptop they explore afresh. The explicit @example cases and parametrized
# classes run in both.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # gc_freeze off: a test process builds hundreds of apps, and frozen objects are never freed; the
        # collector's thresholds are the process's own (tests/unit/test_gc.py sets them on purpose).
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "admin_api_key": ADMIN_KEY,
            "gc_freeze": False,
            "gc_threshold": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """A new app, and so a fresh metrics registry, for every test."""
    return create_app(settings)


@pytest.fixture
def client_for() -> ClientFor:
    """``async with client_for(app) as client``: the app's lifespan runs, requests carry the admin key
    (``key=None`` for none, or another key)."""

    @asynccontextmanager
    async def open_client(app: FastAPI, key: str | None = ADMIN_KEY) -> AsyncIterator[httpx.AsyncClient]:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client,
        ):
            yield client

    return open_client


@pytest.fixture
async def client(app: FastAPI, client_for: ClientFor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)
        self.ticks = 1000.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        self.ticks += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:  # noqa: F811
    """Settings on both databases; a test module overrides this fixture to change settings."""
    return make_settings(database_url=database_url, session_idle_ttl_seconds=600)


@pytest.fixture
def db_app(db_settings: Settings, clock: FakeClock) -> FastAPI:
    return create_app(db_settings, clock=clock)


@pytest.fixture
async def admin(db_app: FastAPI, client_for: ClientFor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(db_app) as client:
        yield client


@pytest.fixture
def key_for(admin: httpx.AsyncClient) -> Callable[..., Any]:
    """Create a key with a role over HTTP and return its secret."""

    async def create(role: str, name: str | None = None) -> str:
        response = await admin.post("/api/v1/keys", json={"name": name or f"{role}-key", "role": role})
        assert response.status_code == 201, response.text
        secret: str = response.json()["key"]
        return secret

    return create


@pytest.fixture
async def anonymous(db_app: FastAPI, admin: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no key, on the app the ``admin`` fixture started."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=db_app), base_url="http://testserver"
    ) as client:
        yield client
