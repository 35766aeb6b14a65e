"""The HTTP middleware, driven through raw ASGI calls so that disconnects and failures are exact."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Message

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.monitoring.catalogue import UNMATCHED_ENDPOINT
from agentic_backend.monitoring.exposition import render
from agentic_backend.monitoring.service import Telemetry
from tests.unit.monitoring.helpers import samples, value


def build(settings: Settings) -> tuple[FastAPI, Telemetry]:
    app = create_app(settings)
    router = APIRouter(prefix="/api/v1/test")

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @router.get("/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first "
            await asyncio.sleep(0.2)
            yield b"last"

        return StreamingResponse(body())

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.include_router(router)
    return app, app.state.telemetry


async def call(app: FastAPI, method: str, path: str, messages: list[Message] | None = None) -> list[Message]:
    """Send one request; ``messages`` are what ``receive`` returns, then it waits forever."""
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with contextlib.suppress(RuntimeError, ClientDisconnect):  # what a server would log and drop
        await app(scope, receive, send)
    return sent


def metrics_text(telemetry: Telemetry) -> str:
    return render(telemetry.snapshot())


@pytest.fixture
async def built(settings: Settings) -> AsyncIterator[tuple[FastAPI, Telemetry]]:
    app, telemetry = build(settings)
    async with app.router.lifespan_context(app):
        yield app, telemetry


async def test_route_templates_not_paths_label_requests(built: tuple[FastAPI, Telemetry]) -> None:
    app, telemetry = built
    for item_id in (1, 2, 3):
        await call(app, "GET", f"/api/v1/test/items/{item_id}")
    await call(app, "GET", "/api/v1/test/items/not-a-number")
    text = metrics_text(telemetry)
    assert (
        value(
            text, "http_requests_total", method="GET", endpoint="/api/v1/test/items/{item_id}", status="200"
        )
        == 3
    )
    assert (
        value(
            text, "http_requests_total", method="GET", endpoint="/api/v1/test/items/{item_id}", status="422"
        )
        == 1
    )
    assert (
        value(
            text, "http_request_duration_seconds_count", method="GET", endpoint="/api/v1/test/items/{item_id}"
        )
        == 4
    )


async def test_unmatched_paths_and_unknown_methods_take_one_fixed_value(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    for i in range(50):
        await call(app, "GET", f"/random/{i}")
    await call(app, "BREW", "/api/v1/test/items/1")
    text = metrics_text(telemetry)
    assert value(text, "http_requests_total", method="GET", endpoint=UNMATCHED_ENDPOINT, status="404") == 50
    other = [k for k in samples(text) if k[0] == "http_requests_total" and ("method", "OTHER") in k[1]]
    assert len(other) == 1
    assert not any("/random/" in label for key in samples(text) for _, label in key[1])


async def test_an_exception_counts_as_500_and_active_requests_returns_to_zero(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    sent = await call(app, "GET", "/api/v1/test/boom")
    assert sent[0]["status"] == 500
    text = metrics_text(telemetry)
    assert value(text, "http_requests_total", method="GET", endpoint="/api/v1/test/boom", status="500") == 1
    assert value(text, "active_requests") == 0


async def test_duration_runs_until_the_last_body_chunk(built: tuple[FastAPI, Telemetry]) -> None:
    app, telemetry = built
    await call(app, "GET", "/api/v1/test/slow-stream")
    text = metrics_text(telemetry)
    total = value(
        text, "http_request_duration_seconds_sum", method="GET", endpoint="/api/v1/test/slow-stream"
    )
    assert total is not None
    assert total >= 0.2


async def test_a_client_that_disconnects_counts_as_499(built: tuple[FastAPI, Telemetry]) -> None:
    app, telemetry = built
    # The client sends half its body and goes away; the endpoint is reading the body.
    await call(
        app,
        "POST",
        "/api/v1/test/echo",
        [{"type": "http.request", "body": b"half", "more_body": True}, {"type": "http.disconnect"}],
    )
    # A streaming response notices the disconnect too.
    await call(app, "GET", "/api/v1/test/slow-stream", [{"type": "http.disconnect"}])
    text = metrics_text(telemetry)
    assert value(text, "http_requests_total", method="POST", endpoint="/api/v1/test/echo", status="499") == 1
    assert (
        value(text, "http_requests_total", method="GET", endpoint="/api/v1/test/slow-stream", status="499")
        == 1
    )
    assert value(text, "active_requests") == 0


async def test_active_requests_counts_requests_in_flight(built: tuple[FastAPI, Telemetry]) -> None:
    app, telemetry = built
    task = asyncio.create_task(call(app, "GET", "/api/v1/test/slow-stream"))
    await asyncio.sleep(0.05)
    assert value(metrics_text(telemetry), "active_requests") == 1
    await task
    assert value(metrics_text(telemetry), "active_requests") == 0


async def test_every_route_of_the_service_is_labelled_with_its_full_template(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    paths = [r.path for r in app.routes if hasattr(r, "path")] + ["/api/v1/monitoring/health"]
    for path in paths:
        await call(app, "GET", path)
    endpoints = {
        dict(k[1]).get("endpoint") for k in samples(metrics_text(telemetry)) if k[0] == "http_requests_total"
    }
    assert "/api/v1/monitoring/health" in endpoints
    assert "/docs" in endpoints
    assert all(e == UNMATCHED_ENDPOINT or e.startswith("/") for e in endpoints)
