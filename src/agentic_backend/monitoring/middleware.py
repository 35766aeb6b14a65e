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
from collections.abc import Awaitable
from time import perf_counter

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic_backend.monitoring.catalogue import (
    KNOWN_METHODS,
    OTHER_METHOD,
    UNMATCHED_ENDPOINT,
    BuiltinMetrics,
)
from agentic_backend.monitoring.metrics import HistogramSeries
from agentic_backend.monitoring.storage import FloatView

CLIENT_CLOSED_REQUEST = 499
_DISCONNECTS = (ClientDisconnect, asyncio.CancelledError, OSError)


# Where one label set's values live: the counter's page and slot, the histogram's page, first bucket slot,
# bucket edges and sum slot. The hot path updates them in place (see ``HttpMetricsMiddleware``).
_Slots = tuple[FloatView, int, FloatView, int, tuple[float, ...], int]


class HttpMetricsMiddleware:
    """Records every HTTP request.

    ``bench/http_overhead.py`` holds this to >= 97 % of bare FastAPI's throughput, so the hot path is
    written for speed: ``send`` is wrapped by a plain function that returns the server's own awaitable (no
    extra coroutine per message), and the series of a label set are updated in place through their page
    slots, looked up once per label set.
    """

    def __init__(self, app: ASGIApp, metrics: BuiltinMetrics) -> None:
        self.app = app
        self._requests = metrics.http_requests
        self._durations = metrics.http_duration
        self._active, self._active_slot = metrics.active_requests.labels().location()
        self._slots: dict[tuple[str, str, int], _Slots] = {}
        self._endpoint_paths: dict[object, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        end = 0.0
        status = 0

        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status, end
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body"):
                end = perf_counter()
            return send(message)

        active, active_slot = self._active, self._active_slot
        active[active_slot] += 1.0
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if not end:  # the response did not complete: a server error, unless the client went away
                end = perf_counter()
                status = CLIENT_CLOSED_REQUEST if isinstance(exc, _DISCONNECTS) else 500
            raise
        finally:
            active[active_slot] -= 1.0
            if not end:
                # Returned without finishing the response: Starlette does that only when the client went
                # away (a streaming response stops on http.disconnect).
                end = perf_counter()
                status = CLIENT_CLOSED_REQUEST
            route = scope.get("route")
            key = (
                scope["method"],
                route.path_format if route is not None else self._endpoint_path(scope),
                status,
            )
            slots = self._slots.get(key) or self._slots_for(key)
            counter, counter_slot, histogram, first_bucket, edges, sum_slot = slots
            seconds = end - start
            counter[counter_slot] += 1.0
            # The first edge >= the duration (le = "less or equal"), scanning up from the smallest: most
            # requests end in the first few buckets, where a scan of specialised float compares beats
            # bisect_left's call and generic compares (prometheus_client's Histogram.observe scans too).
            bucket = first_bucket
            for edge in edges:
                if seconds <= edge:
                    break
                bucket += 1
            histogram[bucket] += 1.0
            histogram[sum_slot] += seconds

    def _slots_for(self, key: tuple[str, str, int]) -> _Slots:
        method, endpoint, status = key
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        histogram = self._durations.labels(method, endpoint)
        assert isinstance(histogram, HistogramSeries)
        slots = (*self._requests.labels(method, endpoint, str(status)).location(), *histogram.layout())
        # Keys are bounded (known methods, routes, status codes) except for made-up methods: cache those
        # only while the cache is small, so a client inventing methods cannot grow it.
        if len(self._slots) < 10_000 or method != OTHER_METHOD:
            self._slots[key] = slots
        return slots

    def _endpoint_path(self, scope: Scope) -> str:
        """The template of a matched non-FastAPI route (docs, mounts), from the endpoint the router chose."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED_ENDPOINT
        path = self._endpoint_paths.get(endpoint)
        if path is None:
            for route in getattr(scope.get("app"), "routes", ()):
                if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint:
                    path = getattr(route, "path_format", None)
                    break
            path = path or UNMATCHED_ENDPOINT
            if len(self._endpoint_paths) < 1000:
                self._endpoint_paths[endpoint] = path
        return path
