from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from tests.conftest import ClientFor
from tests.databases import database_url  # noqa: F401  (the fixture)


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
def db_app(make_settings: Callable[..., Settings], database_url: str, clock: FakeClock) -> FastAPI:  # noqa: F811
    return create_app(make_settings(database_url=database_url, session_idle_ttl_seconds=600), clock=clock)


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
