"""HTTP instrumentation as one plain ASGI middleware.

Records ``http_requests_total``, ``http_request_duration_seconds`` and ``active_requests`` for every HTTP
request. The duration runs until the last body chunk is handed to the server; a client that disconnects
before that counts as status 499, an exception before the response completes as 500; ``active_requests``
is decremented in ``finally``, so it always returns to rest. The ``endpoint`` label is the matched route's
template, read from the scope the router filled in (FastAPI sets ``scope["route"]``; a plain Starlette route
is found by its endpoint), never by matching the path again; no match is ``__unmatched__``. FastAPI keeps
an ``include_router(prefix=...)`` prefix out of ``route.path_format``, so routers carry their full prefix
themselves (``APIRouter(prefix="/api/v1/...")``); a test checks every route's label.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic_backend.monitoring.catalogue import (
    KNOWN_METHODS,
    OTHER_METHOD,
    UNMATCHED_ENDPOINT,
    BuiltinMetrics,
)
from agentic_backend.monitoring.metrics import HistogramSeries, Series

CLIENT_CLOSED_REQUEST = 499
_DISCONNECTS = (ClientDisconnect, asyncio.CancelledError, OSError)


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: BuiltinMetrics) -> None:
        self.app = app
        self._requests = metrics.http_requests
        self._durations = metrics.http_duration
        self._active = metrics.active_requests.labels()
        # Per label set, the series: one dict lookup on the hot path instead of building label tuples.
        self._series: dict[tuple[str, str, int], tuple[Series, HistogramSeries]] = {}
        self._endpoint_paths: dict[Any, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        end = 0.0
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, end
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                end = perf_counter()
            await send(message)

        active = self._active
        active.inc()
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = exc
            raise
        finally:
            active.dec()
            if not end:
                # The response did not complete. Starlette returns without finishing it only when the client
                # went away (a streaming response stops on http.disconnect); a disconnect can also surface as
                # an exception while reading the body or writing. Anything else is a server error.
                end = perf_counter()
                disconnected = error is None or isinstance(error, _DISCONNECTS)
                status = CLIENT_CLOSED_REQUEST if disconnected else 500
            self._record(scope, status, end - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = route.path_format if route is not None else self._endpoint_path(scope)
        key = (scope["method"], endpoint, status)
        pair = self._series.get(key)
        if pair is None:
            pair = self._series_for(key)
        pair[0].inc()
        pair[1].observe(seconds)

    def _series_for(self, key: tuple[str, str, int]) -> tuple[Series, HistogramSeries]:
        method, endpoint, status = key
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        histogram = self._durations.labels(method, endpoint)
        assert isinstance(histogram, HistogramSeries)
        pair = (self._requests.labels(method, endpoint, str(status)), histogram)
        # Keys are bounded (known methods, routes, status codes) except for made-up methods: cache those
        # only while the cache is small, so a client inventing methods cannot grow it.
        if len(self._series) < 10_000 or method != OTHER_METHOD:
            self._series[key] = pair
        return pair

    def _endpoint_path(self, scope: Scope) -> str:
        """The template of a matched non-FastAPI route (docs, mounts), from the endpoint the router chose."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED_ENDPOINT
        path = self._endpoint_paths.get(endpoint)
        if path is None:
            app = scope.get("app")
            for route in getattr(app, "routes", ()):
                if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint:
                    path = getattr(route, "path_format", None)
                    break
            path = path or UNMATCHED_ENDPOINT
            if len(self._endpoint_paths) < 1000:
                self._endpoint_paths[endpoint] = path
        return path
