"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings

ADMIN_KEY = "test-admin-key-0123456789-abcdefghijklmnopqrstuvwxyz"

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "admin_api_key": ADMIN_KEY}
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
