"""The HTTP middleware, driven through raw ASGI calls so that disconnects and failures are exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.requests import ClientDisconnect
from starlette.routing import Host, Route, Router
from starlette.types import Message

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.core.routes import UNMATCHED_ENDPOINT
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring import middleware
from agentic_backend.monitoring.catalogue import HTTP_DURATION_BUCKETS
from agentic_backend.monitoring.middleware import HttpMetricsMiddleware
from agentic_backend.monitoring.service import Telemetry
from tests.helpers import samples, value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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

    @router.get("/refused")
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")  # not from storage: a bug, 500

    @router.get("/database-away")
    async def database_away() -> None:
        # A real driver failing to connect: asyncpg raises the socket's ConnectionRefusedError unwrapped.
        engine = create_async_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/none")
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    @router.get("/database-locked")
    async def database_locked() -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))

    @router.get("/bad-statement")
    async def bad_statement() -> None:
        raise ProgrammingError("SELECT nonsense", {}, sqlite3.ProgrammingError("no such column: secret"))

    @router.get("/cancelled")
    async def cancelled() -> None:
        raise asyncio.CancelledError  # the server cancelled the task; the client did not go away

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.include_router(router)
    return app, state.of(app).telemetry


async def call(
    app: FastAPI,
    method: str,
    path: str,
    messages: list[Message] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    peer_closed: bool = False,
) -> list[Message]:
    """Send one request; ``messages`` are what ``receive`` returns, then it waits forever. With
    ``peer_closed`` the server's ``send`` fails for the body, as a socket whose peer has closed does."""
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if peer_closed and message["type"] == "http.response.body":
            raise BrokenPipeError(32, "Broken pipe")
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
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with contextlib.suppress(  # what a server would log and drop
        RuntimeError, ClientDisconnect, OSError, asyncio.CancelledError
    ):
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


def body_of(sent: list[Message]) -> dict[str, Any]:
    assert sent[0]["type"] == "http.response.start"
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json", headers
    data: dict[str, Any] = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return data


async def test_an_exception_is_a_json_500_with_a_request_id_and_no_exception_text(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    for path in ("/api/v1/test/boom", "/api/v1/test/refused", "/api/v1/test/bad-statement"):
        sent = await call(app, "GET", path, headers=[(b"x-request-id", b"req-42")])
        assert sent[0]["status"] == 500, path
        body = body_of(sent)
        assert body["error"] == "InternalServerError"
        assert body["request_id"] == "req-42"
        assert "req-42" in body["detail"]
        assert "kaboom" not in body["detail"]
        assert "secret" not in body["detail"]
        assert dict(sent[0]["headers"])[b"x-request-id"] == b"req-42"
    # A request id the caller cannot be trusted with (header injection, a huge value) is replaced.
    sent = await call(app, "GET", "/api/v1/test/boom", headers=[(b"x-request-id", b"a b\r\nSet-Cookie: x")])
    assert len(body_of(sent)["request_id"]) == 32
    text_ = metrics_text(telemetry)
    for endpoint, count in (
        ("/api/v1/test/boom", 2),
        ("/api/v1/test/refused", 1),
        ("/api/v1/test/bad-statement", 1),
    ):
        assert value(text_, "http_requests_total", method="GET", endpoint=endpoint, status="500") == count
    assert not [k for k in samples(text_) if k[0] == "http_requests_total" and ("status", "499") in k[1]]


async def test_storage_failures_are_a_503_with_retry_after_counted_as_sent(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    for path, reason in (
        ("/api/v1/test/database-away", "the database is unreachable"),
        ("/api/v1/test/database-locked", "locked"),
    ):
        sent = await call(app, "GET", path)
        assert sent[0]["status"] == 503, (path, sent)
        assert dict(sent[0]["headers"])[b"retry-after"] == b"2"
        body = body_of(sent)
        assert body["error"] == "StorageUnavailable"
        assert reason in body["detail"]
        text_ = metrics_text(telemetry)
        assert value(text_, "http_requests_total", method="GET", endpoint=path, status="503") == 1


async def test_a_cancelled_request_the_client_did_not_leave_is_a_server_error(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    await call(app, "GET", "/api/v1/test/cancelled")
    text_ = metrics_text(telemetry)
    assert (
        value(text_, "http_requests_total", method="GET", endpoint="/api/v1/test/cancelled", status="500")
        == 1
    )
    assert value(text_, "active_requests") == 0


async def test_a_send_that_fails_because_the_peer_closed_counts_as_499(
    built: tuple[FastAPI, Telemetry],
) -> None:
    app, telemetry = built
    await call(app, "GET", "/api/v1/test/items/7", peer_closed=True)  # a plain response: the OSError itself
    await call(app, "GET", "/api/v1/test/slow-stream", peer_closed=True)  # streaming: ClientDisconnect
    text_ = metrics_text(telemetry)
    for endpoint in ("/api/v1/test/items/{item_id}", "/api/v1/test/slow-stream"):
        assert value(text_, "http_requests_total", method="GET", endpoint=endpoint, status="499") == 1


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


async def test_each_duration_lands_in_the_first_bucket_whose_edge_it_does_not_exceed(
    built: tuple[FastAPI, Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, telemetry = built
    # A clock that starts every request at 0 and ends it after the given duration (le: less or equal).
    durations = [0.005, 0.0050001, 0.3, 120.0, 1000.0]
    ticks = iter(t for d in durations for t in (0.0, d))
    monkeypatch.setattr(middleware, "perf_counter", lambda: next(ticks))
    for _ in durations:
        await call(app, "GET", "/api/v1/test/items/1")
    text = metrics_text(telemetry)
    labels = {"method": "GET", "endpoint": "/api/v1/test/items/{item_id}"}
    cumulative = dict.fromkeys(["0.005"], 1) | dict.fromkeys(["0.01", "0.025", "0.05", "0.1", "0.25"], 2)
    cumulative |= dict.fromkeys(["0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "60.0"], 3) | {"120.0": 4}
    assert len(cumulative) == len(HTTP_DURATION_BUCKETS)
    for le, expected in cumulative.items():
        assert value(text, "http_request_duration_seconds_bucket", le=le, **labels) == expected, le
    assert value(text, "http_request_duration_seconds_bucket", le="+Inf", **labels) == len(durations)
    assert value(text, "http_request_duration_seconds_sum", **labels) == pytest.approx(sum(durations))


async def test_routes_without_a_template_are_labelled_by_endpoint_without_failing(settings: Settings) -> None:
    # Starlette puts the matched route in the scope even when it has no template (a Host route), and it
    # stays there when the host's own router finds nothing.
    app, telemetry = build(settings)

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    app.router.routes.append(Host("tenant.example.org", Router(routes=[Route("/ping", ping)])))
    host = [(b"host", b"tenant.example.org")]
    async with app.router.lifespan_context(app):
        ok = await call(app, "GET", "/ping", headers=host)
        missing = await call(app, "GET", "/nothing-here", headers=host)
    assert ok[0]["status"] == 200
    assert missing[0]["status"] == 404
    text = metrics_text(telemetry)
    assert value(text, "http_requests_total", method="GET", endpoint="/ping", status="200") == 1
    assert value(text, "http_requests_total", method="GET", endpoint=UNMATCHED_ENDPOINT, status="404") == 1
    assert value(text, "active_requests") == 0


async def test_made_up_methods_cannot_grow_the_label_set_cache(
    built: tuple[FastAPI, Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, telemetry = built
    monkeypatch.setattr(HttpMetricsMiddleware, "CACHE_LIMIT", 5)
    for i in range(40):
        await call(app, f"BREW{i}", "/api/v1/test/items/1")  # a route that does not take the method: 405
        await call(app, f"BREW{i}", f"/nowhere/{i}")  # no route: 404
    await call(app, "GET", "/api/v1/test/items/1")  # known methods are cached past the limit
    layer = app.middleware_stack
    while not isinstance(layer, HttpMetricsMiddleware):
        layer = layer.app  # type: ignore[union-attr]
    assert len(layer._by_key) == 5 + 1
    assert sum(len(by_method) for paths in layer._slots.values() for by_method in paths.values()) <= 5 + 1
    text = metrics_text(telemetry)
    route = "/api/v1/test/items/{item_id}"
    assert value(text, "http_requests_total", method="OTHER", endpoint=route, status="405") == 40
    assert value(text, "http_requests_total", method="OTHER", endpoint=UNMATCHED_ENDPOINT, status="404") == 40
