"""The four apps ``http_overhead.py`` compares: one small JSON route, instrumented four ways.

Each is an application factory for ``uvicorn --factory bench.apps:<name>``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


def _with_route(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "name": "widget", "ok": True}

    return app


def bare() -> FastAPI:
    return _with_route(FastAPI())


def ours() -> FastAPI:
    from agentic_backend.core.config import Settings
    from agentic_backend.monitoring.middleware import HttpMetricsMiddleware
    from agentic_backend.monitoring.service import Telemetry

    telemetry = Telemetry(Settings())
    app = _with_route(FastAPI())
    # As the service adds it: with the event-loop monitor, which each request checks (and wakes, resting).
    app.add_middleware(HttpMetricsMiddleware, metrics=telemetry.metrics, loop_monitor=telemetry.loop_monitor)
    return app


def instrumentator() -> FastAPI:
    from prometheus_fastapi_instrumentator import Instrumentator

    app = _with_route(FastAPI())
    Instrumentator().instrument(app)
    return app


def starlette_exporter() -> FastAPI:
    from starlette_exporter import PrometheusMiddleware

    app = _with_route(FastAPI())
    app.add_middleware(PrometheusMiddleware, group_paths=True)
    return app


def naive() -> FastAPI:
    """A plain prometheus_client middleware: what most teams write first."""
    import time

    from prometheus_client import Counter, Histogram
    from prometheus_client.registry import CollectorRegistry
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    registry = CollectorRegistry()
    requests = Counter("http_requests_total", "", ["method", "endpoint", "status"], registry=registry)
    duration = Histogram("http_request_duration_seconds", "", ["method", "endpoint"], registry=registry)

    class Middleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def wrapped(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, wrapped)
            finally:
                route = scope.get("route")
                endpoint = route.path_format if route is not None else "none"
                requests.labels(scope["method"], endpoint, str(status)).inc()
                duration.labels(scope["method"], endpoint).observe(time.perf_counter() - start)

    app = _with_route(FastAPI())
    app.add_middleware(Middleware)
    return app


def passthrough() -> FastAPI:
    """A middleware that does nothing: the floor for any ASGI middleware."""
    from starlette.types import ASGIApp, Receive, Scope, Send

    class Middleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    app = _with_route(FastAPI())
    app.add_middleware(Middleware)
    return app


def send_wrapper_only() -> FastAPI:
    """A middleware that only wraps send, as ours does: the floor for reading the status."""
    from time import perf_counter

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    class Middleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            start = perf_counter()
            status = 0

            def send_wrapper(message: Message):  # type: ignore[no-untyped-def]
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                return send(message)

            await self.app(scope, receive, send_wrapper)
            self.last = (status, perf_counter() - start)

    app = _with_route(FastAPI())
    app.add_middleware(Middleware)
    return app


def populated() -> FastAPI:
    """The service with ``BENCH_SERIES`` extra series in this worker's registry (bench/scrape_merge.py)."""
    from agentic_backend import state
    from agentic_backend.app import create_app as create_service

    app = create_service()
    requests = state.of(app).telemetry.metrics.http_requests
    for i in range(int(os.environ.get("BENCH_SERIES", "5000"))):
        requests.labels("GET", f"/bench/{i}", "200").inc(i)
    return app


class RelayBody(BaseModel):
    model: str
    messages: list[dict[str, object]]


def relay() -> FastAPI:
    """The floor under the service's chat completion (bench/overhead.py): FastAPI, a pydantic body, one
    aiohttp POST to the upstream (``BENCH_UPSTREAM``, an OpenAI-style base URL) and its answer passed back.
    No key, budget, cache, ledger or metrics: what uvicorn, FastAPI and the HTTP client cost alone."""
    import aiohttp
    from fastapi import Response

    url = os.environ["BENCH_UPSTREAM"].rstrip("/") + "/chat/completions"
    sessions: list[aiohttp.ClientSession] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: RelayBody) -> Response:
        if not sessions:
            sessions.append(aiohttp.ClientSession(headers={"Authorization": "Bearer x"}))
        async with sessions[0].post(url, json=body.model_dump() | {"model": "gpt-4o-mini"}) as answer:
            return Response(await answer.read(), media_type="application/json")

    return app


def asgi_relay() -> Any:
    """What no Python service on uvicorn can go under (bench/overhead.py): a bare ASGI callable, no
    framework and no validation, that relays the body with the service's own HTTP client (llm/http1.py)
    and passes the answer back. The least uvicorn, the loop and one provider call add."""
    import json

    from agentic_backend.llm.http1 import Http1Client

    url = os.environ["BENCH_UPSTREAM"].rstrip("/") + "/chat/completions"
    clients: list[Http1Client] = []
    head = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        data = json.loads(body) | {"model": "gpt-4o-mini"}
        if not clients:
            clients.append(
                Http1Client(url, {"Authorization": "Bearer x", "Content-Type": "application/json"})
            )
        answer = await clients[0].post(json.dumps(data).encode(), timeout=30)
        await send({"type": "http.response.start", "status": answer.status, "headers": head})
        await send({"type": "http.response.body", "body": answer.body})

    return app
