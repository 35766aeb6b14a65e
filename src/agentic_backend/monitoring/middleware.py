"""HTTP instrumentation as one plain ASGI middleware.

Records ``http_requests_total``, ``http_request_duration_seconds`` and ``active_requests`` for every HTTP
request, with the status the client received. The duration runs until the last body chunk is handed to the
server. A request that does not complete its response counts as 499 only when the client really went away:
the app received ``http.disconnect``, Starlette raised ``ClientDisconnect``, or the exception came out of
the server's ``send`` (the peer closed). Anything else that ends a response early is a server failure:
an exception from a route or a dependency (the outermost error handler then answers a JSON 503 for a
storage failure or a 500, outside this middleware, so it records the same status itself with the same
``storage_failure``), a cancelled task, or an app that returned without answering (500). Errors the app's
own handlers turn into responses (a 503 for a SQLAlchemy error) pass through ``send`` and count as sent.
``active_requests`` is decremented in ``finally``, so it always returns to rest.

The ``endpoint`` label is the matched route's template, read from the scope the router filled in
(``scope["route"]``; a route without a template, such as a ``Host``, or an older Starlette that sets only
``scope["endpoint"]``, is found by its endpoint), never by matching the path again; no match is
``__unmatched__``. FastAPI keeps an ``include_router(prefix=...)`` prefix out of ``route.path_format``, so
routers carry their full prefix themselves (``APIRouter(prefix="/api/v1/...")``); a test checks every
route's label.
"""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic_backend.core.errors import storage_failure
from agentic_backend.core.routes import UNMATCHED_ENDPOINT
from agentic_backend.metricstore.exemplars import Exemplars
from agentic_backend.metricstore.families import HistogramSeries
from agentic_backend.metricstore.storage import FloatView
from agentic_backend.monitoring.catalogue import KNOWN_METHODS, OTHER_METHOD, BuiltinMetrics
from agentic_backend.monitoring.waits import EventLoopMonitor

CLIENT_CLOSED_REQUEST = 499
SERVER_ERROR = 500
SERVICE_UNAVAILABLE = 503


def _raised_by(exc: BaseException, function: object) -> bool:
    """Whether ``exc``, or an exception it was raised from, propagated out of ``function`` (a function or
    bound method): its traceback holds one of its frames. Read on the failure path only."""
    function = getattr(function, "__func__", function)  # a bound method's function
    code = getattr(function, "__code__", None)
    seen: set[int] = set()
    current: BaseException | None = exc
    while code is not None and current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is code:
                return True
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return False


def failure_status(exc: BaseException, *, client_gone: bool) -> int:
    """The status a request that ``exc`` ended before its response completed gets in the metric: 499 if
    the client went away (``client_gone``: a disconnect was seen, or the server's send failed), else what
    the outermost error handler answers (503 or 500)."""
    if client_gone or isinstance(exc, ClientDisconnect):
        return CLIENT_CLOSED_REQUEST
    return SERVICE_UNAVAILABLE if storage_failure(exc) is not None else SERVER_ERROR


# Where one label set's values live: the counter's page and slot, the histogram's page, first bucket slot,
# bucket edges and sum slot. The hot path updates them in place (see ``HttpMetricsMiddleware``).
_Slots = tuple[FloatView, int, FloatView, int, tuple[float, ...], int, tuple[str, str]]


# The request's arrival (perf_counter), in its ASGI scope: a key of the scope itself, as cheap as a store
# gets; scope["state"] would be a dict made per request when the server gives none.
ARRIVED = "agentic_backend.arrived"


class HttpMetricsMiddleware:
    """Records every HTTP request.

    ``bench/http_overhead.py`` holds this to >= 97 % of bare FastAPI's throughput, so the hot path is
    written for speed: ``send`` is wrapped by a plain function that returns the server's own awaitable (no
    extra coroutine per message), and the series of a label set are updated in place through their page
    slots, looked up once per label set.
    """

    # Cache keys are bounded (known methods x routes x status codes) except for made-up methods, which a
    # client can invent without end: label sets with those are cached only while the cache is this small.
    CACHE_LIMIT = 10_000

    def __init__(
        self,
        app: ASGIApp,
        metrics: BuiltinMetrics,
        exemplars: Exemplars | None = None,
        loop_monitor: EventLoopMonitor | None = None,
    ) -> None:
        self.app = app
        self._monitor = loop_monitor  # woken by each request while it rests (monitoring/waits.py)
        self._exemplars = exemplars  # with tracing on: the request's trace as its bucket's exemplar
        self._requests = metrics.http_requests
        self._durations = metrics.http_duration
        self._active, self._active_slot = metrics.active_requests.labels().location()
        # The hot path's cache, by status, route template and method (matched routes only), and the slow
        # path's, by (method, endpoint, status), which also holds unmatched and template-less requests.
        self._slots: dict[int, dict[str, dict[str, _Slots]]] = {}
        self._by_key: dict[tuple[str, str, int], _Slots] = {}
        self._endpoint_paths: dict[object, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        scope[ARRIVED] = start  # what a query's overhead counts from (agents/router.py)
        end = 0.0
        status = 0
        disconnected = False

        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status, end
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body"):  # the last body chunk (or a final pathsend/trailers message)
                end = perf_counter()
            return send(message)

        async def receive_wrapper() -> Message:
            # Called only by apps that read the body or wait for a disconnect (a GET usually never does).
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        active, active_slot = self._active, self._active_slot
        active[active_slot] += 1.0
        monitor = self._monitor
        if monitor is not None and monitor.resting:
            monitor.wake()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            # The response did not complete (or its last send failed): a server error, unless the client
            # went away.
            send_failed = _raised_by(exc, send)
            if not end or send_failed:
                end = perf_counter()
                status = failure_status(exc, client_gone=disconnected or send_failed)
            raise
        finally:
            active[active_slot] -= 1.0
            if monitor is not None and not active[active_slot]:
                monitor.idle()  # nothing in flight: rest now, not after one more timer (waits.py)
            if not end:
                # Returned without finishing the response: Starlette does that when the client went away
                # (a streaming response stops on http.disconnect); otherwise the app failed to answer.
                end = perf_counter()
                status = CLIENT_CLOSED_REQUEST if disconnected else SERVER_ERROR
            try:
                # status -> route template -> method: three subscripts of small dicts whose keys hash
                # cheaply (an int, the route's own template string, a 3-7 letter method), about 600
                # instructions less than building and hashing a (method, endpoint, status) tuple.
                slots = self._slots[status][scope["route"].path_format][scope["method"]]
            except (KeyError, AttributeError):  # a new label set, or no matched route with a template
                slots = self._slots_for(scope, status)
            counter, counter_slot, histogram, first_bucket, edges, sum_slot, labels = slots
            seconds = end - start
            counter[counter_slot] += 1.0
            # The first edge >= the duration (le = "less or equal"). Most requests end in the first
            # bucket, so that case is one float compare; otherwise scan up from the smallest edge, where
            # specialised float compares beat bisect_left's call (prometheus_client scans too).
            bucket = first_bucket
            if seconds > edges[0]:
                for edge in edges:
                    if seconds <= edge:
                        break
                    bucket += 1
            histogram[bucket] += 1.0
            histogram[sum_slot] += seconds
            if self._exemplars is not None:
                self._exemplars.record(self._durations.spec.name, labels, bucket - first_bucket, seconds)

    def _slots_for(self, scope: Scope, status: int) -> _Slots:
        """The slots of a request's label set, found the slow way, and cached for the hot path."""
        method = scope["method"]
        route = scope.get("route")
        template = getattr(route, "path_format", None)
        endpoint = template or self._endpoint_path(scope)
        key = (method, endpoint, status)
        slots = self._by_key.get(key)
        if slots is None:
            label = method if method in KNOWN_METHODS else OTHER_METHOD
            histogram = self._durations.labels(label, endpoint)
            assert isinstance(histogram, HistogramSeries)
            counter = self._requests.labels(label, endpoint, str(status))
            slots = (*counter.location(), *histogram.layout(), (label, endpoint))
            cacheable = counter.stored and histogram.stored  # else the next request tries storage again
            if cacheable and (len(self._by_key) < self.CACHE_LIMIT or label != OTHER_METHOD):
                self._by_key[key] = slots
                if template:
                    self._slots.setdefault(status, {}).setdefault(template, {})[method] = slots
        return slots

    def _endpoint_path(self, scope: Scope) -> str:
        """The template of a route that put no template in the scope, from the endpoint the router chose."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED_ENDPOINT
        try:
            return self._endpoint_paths[endpoint]
        except KeyError:
            cacheable = len(self._endpoint_paths) < 1000
        except TypeError:  # unhashable: the router of a Host or Mount that matched nothing inside
            cacheable = False
        path = next(
            (
                getattr(route, "path_format", None)
                for route in getattr(scope.get("app"), "routes", ())
                if getattr(route, "endpoint", None) is endpoint or getattr(route, "app", None) is endpoint
            ),
            None,
        )
        path = path or UNMATCHED_ENDPOINT
        if cacheable:
            self._endpoint_paths[endpoint] = path
        return path
