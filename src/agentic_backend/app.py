"""The application factory. Nothing is built at import time: ``create_app(settings)`` makes a new app,
and its lifespan opens (and closes) the database."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio.lowlevel
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from agentic_backend import __version__, state
from agentic_backend.agents.openai_api import router as openai_router
from agentic_backend.agents.recorder import Recorder
from agentic_backend.agents.registry import AgentType, load_agent_types
from agentic_backend.agents.responses_api import router as responses_router
from agentic_backend.agents.router import router as agents_router
from agentic_backend.agents.service import AgentService, Limits
from agentic_backend.billing.budget import Budgets
from agentic_backend.billing.ledger import Ledger
from agentic_backend.billing.pricing import Pricer
from agentic_backend.billing.ratelimit import DatabaseWindows, RedisWindows, Windows
from agentic_backend.billing.router import router as usage_router
from agentic_backend.cache.backends import CacheBackend, MemoryCache, RedisCache
from agentic_backend.cache.service import ResponseCache
from agentic_backend.console import router as console
from agentic_backend.console.history import History, Sampler, leaves_of
from agentic_backend.console.overview import PANELS
from agentic_backend.console.sessions import ConsoleSessions
from agentic_backend.core import bodies
from agentic_backend.core.bodylimit import BodyLimitMiddleware
from agentic_backend.core.clock import Clock, SystemClock
from agentic_backend.core.config import Settings
from agentic_backend.core.db import Database, upgrade_async
from agentic_backend.core.docs import install_docs
from agentic_backend.core.drain import CloseWhileDraining, Drain
from agentic_backend.core.errors import install_error_handlers
from agentic_backend.core.head import HeadAsGet
from agentic_backend.core.logs import RequestLogMiddleware
from agentic_backend.core.openapi import contract_openapi
from agentic_backend.core.tasks import cancel
from agentic_backend.core.tracing import TraceIdMiddleware, Tracing
from agentic_backend.identity.auth import ApiKeyAuthorizer
from agentic_backend.identity.guard import BruteForceGuard
from agentic_backend.identity.router import router as keys_router
from agentic_backend.identity.service import KeyService
from agentic_backend.llm.base import Provider
from agentic_backend.llm.factory import build_providers
from agentic_backend.metricstore.exemplars import Exemplars
from agentic_backend.monitoring import catalogue as cat
from agentic_backend.monitoring.health import HealthCheck, metrics_checks
from agentic_backend.monitoring.middleware import HttpMetricsMiddleware
from agentic_backend.monitoring.router import router as monitoring_router
from agentic_backend.monitoring.schemas import ComponentHealth, CustomMetricRecord, publish_record_schema
from agentic_backend.monitoring.service import Telemetry
from agentic_backend.sessions.router import router as sessions_router
from agentic_backend.sessions.service import SessionService
from agentic_backend.state import AppState

logger = logging.getLogger(__name__)
_PURGE_INTERVAL = 300.0


def _refine_openapi(schema: dict[str, Any], settings: Settings, agent_types: list[str]) -> None:
    """What only this configuration knows: the custom metrics' caps and the agent types there are."""
    publish_record_schema(
        schema, max_labels=settings.custom_metrics_max_labels, max_batch=settings.custom_metrics_max_batch
    )
    for path in schema["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in ("agent_type", "model") and parameter["in"] == "path":
                    parameter["schema"]["enum"] = agent_types
    schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]["enum"] = agent_types


def _database_check(database: Database) -> HealthCheck:
    async def check() -> ComponentHealth:
        async with database.autocommit.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return ComponentHealth(status="ok", detail=f"{database.dialect} answers")

    return HealthCheck("database", check)


async def warm_up(app: FastAPI, database: Database, pricer: Pricer, models: set[str]) -> None:
    """Do once, before this worker accepts a connection, what the first requests would otherwise pay
    for: loading genai-prices' data (330 ms of CPU), anyio's event-loop backend (60 ms), FastAPI's
    matching tables (20 ms), a few database connections. Paid inside the first requests, it held each
    new worker's queue for up to a second under load, longer with several workers starting together on
    one core (bench/workers.py)."""
    for model in models:
        pricer.price(model, 1, 1)
    await database.warm_up()
    await anyio.lowlevel.checkpoint()
    # An unmatched path through the router alone (no middleware: nothing is counted or logged).
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/.warm-up",
        "raw_path": b"/.warm-up",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "app": app,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        return None

    with contextlib.suppress(Exception):
        await app.router(scope, receive, send)


@dataclass(slots=True)
class _Parts:
    """What the lifespan starts and stops beside the state that requests read."""

    state: AppState
    windows: Windows
    budgets: Budgets
    providers: dict[str, Provider]
    tracing: Tracing
    pricer: Pricer
    sampler: Sampler | None


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service. ``uvicorn --factory agentic_backend.app:create_app`` reads settings from the
    environment; tests pass their own (and a clock they control)."""
    settings = settings or Settings()
    parts = _build(settings, clock or SystemClock())
    app = FastAPI(
        title="Agentic Backend",
        version=__version__,
        summary="LLM agents for backend teams, with production monitoring built in.",
        lifespan=functools.partial(_lifespan, parts),
        docs_url=None,  # core/docs.py serves them without a CDN
        redoc_url=None,
        # FastAPI's native OpenTelemetry, off: the service's own tracing (AGENTIC_OTEL_*, core/tracing.py)
        # and HTTP metrics are the one source of spans and request metrics. Left on, it would add a second
        # set whenever a process-wide provider is set, and it looks the three global providers up on every
        # request even when none is (a health check took 0.80-0.85 ms of CPU with it, 0.70 without).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    state.install(app, parts.state)
    install_error_handlers(app)
    install_docs(app, "Agentic Backend")
    agent_types = sorted(parts.state.agents.agents)
    app.openapi = lambda: contract_openapi(  # type: ignore[method-assign]  # FastAPI's documented override
        app,
        {"CustomMetricRecord": CustomMetricRecord, **bodies.documented()},  # bodies routes read themselves
        lambda schema: _refine_openapi(schema, settings, agent_types),
    )
    _install_routes(app)
    _install_middleware(app, settings, parts)
    return app


def _build(settings: Settings, clock: Clock) -> _Parts:
    """Every service, wired once: the database, identity, billing, the cache, agents, the console."""
    telemetry = Telemetry(settings)
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(
        settings.resolved_database_url,
        timeout=settings.database_timeout_seconds,
        on_wait=telemetry.database_wait,
    )
    keys = KeyService(database, clock, cache_seconds=settings.key_cache_seconds)
    sessions = SessionService(database, clock, timedelta(seconds=settings.session_idle_ttl_seconds))
    # Rate limits and the brute-force guard: shared by every worker and replica (billing/ratelimit.py).
    windows: Windows = (
        RedisWindows(settings.redis_url)
        if settings.redis_url
        else DatabaseWindows(database, lambda: clock.now().timestamp())
    )
    guard = BruteForceGuard(
        windows,
        limit=settings.auth_failure_limit,
        window=settings.auth_failure_window_seconds,
        cooldown=settings.auth_cooldown_seconds,
    )
    backend: CacheBackend = (
        RedisCache(settings.redis_url) if settings.redis_url else MemoryCache(settings.cache_max_bytes)
    )
    cache = ResponseCache(backend, telemetry.metrics, settings.cache_ttl_seconds)
    if backend.shared:
        telemetry.share_between_workers(telemetry.metrics.cache_size.spec.name)
    ledger, budgets, pricer = Ledger(database), Budgets(database), Pricer(settings.model_prices)
    providers = build_providers(settings)
    agent_types = load_agent_types(settings.agents_file)
    tracing, recorder = _recorder(telemetry, ledger, clock, agent_types)
    agents = AgentService(
        agent_types,
        providers,
        pricer=pricer,
        cache=cache,
        budgets=budgets,
        limiter=windows,
        sessions=sessions,
        recorder=recorder,
        limits=Limits.of(settings),
        clock=clock,
    )
    console_sessions = ConsoleSessions(database, clock, timedelta(hours=settings.console_session_hours))
    history, sampler = _history(settings, database, telemetry)
    active_sessions = telemetry.metrics.active_sessions.labels()

    async def count_sessions() -> None:
        active_sessions.set(await sessions.active())

    telemetry.add_refresher(count_sessions)
    telemetry.add_refresher(cache.refresh_size)
    app_state = AppState(
        settings=settings,
        clock=clock,
        database=database,
        telemetry=telemetry,
        keys=keys,
        authorizer=ApiKeyAuthorizer(keys, guard, telemetry.metrics, console_sessions),
        sessions=sessions,
        agents=agents,
        ledger=ledger,
        cache=cache,
        health_checks=[
            _database_check(database),
            HealthCheck("cache", cache.health, critical=False),
            *metrics_checks(telemetry, settings.custom_metrics_max_series_total),
        ],
        console_sessions=console_sessions,
        metric_history=history,
        console_http=httpx.AsyncClient(),
        drain=Drain(settings.drain_file),
        key_spend=ledger.totals_by_key,
    )
    return _Parts(app_state, windows, budgets, providers, tracing, pricer, sampler)


def _recorder(
    telemetry: Telemetry, ledger: Ledger, clock: Clock, agent_types: dict[str, AgentType]
) -> tuple[Tracing, Recorder]:
    """Tracing (when configured), and the recorder that counts every query in metrics, spans and ledger."""
    tracing = Tracing()
    if tracing.enabled:  # each latency bucket and the cost counter keep a recent trace (exemplars.py)
        names = (cat.HTTP_DURATION.name, cat.AGENT_DURATION.name, cat.LLM_DURATION.name, cat.API_COST.name)
        telemetry.exemplars = Exemplars(frozenset(names))
    models = frozenset(agent.model for agent in agent_types.values())
    recorder = Recorder(
        telemetry.metrics, ledger, clock, models=models, tracer=tracing.tracer, exemplars=telemetry.exemplars
    )
    return tracing, recorder


def _history(settings: Settings, database: Database, telemetry: Telemetry) -> tuple[History, Sampler | None]:
    """The console's charts: Prometheus when configured, else a history this service keeps. One worker of
    a run (slot 0) writes it; every worker reads it."""
    run = settings.metrics_multiprocess_dir.name if settings.metrics_multiprocess_dir else None
    history = History(
        database,
        leaves_of(t.expr for p in PANELS for t in p.targets),
        run or f"run-{uuid.uuid4().hex[:12]}",
        settings.history_interval_seconds,
    )
    sampler = None
    if settings.prometheus_url is None and telemetry.worker_slot.number == 0:
        sampler = Sampler(history, telemetry.snapshot_async)
    return history, sampler


async def _purge_forever(parts: _Parts) -> None:
    """Expired sessions, the reservations of model calls whose worker died mid-call (the next
    reservation for the same key releases them too), and old rate-window hits."""
    while True:
        await asyncio.sleep(_PURGE_INTERVAL)
        try:
            await parts.state.sessions.purge_expired()
            await parts.budgets.sweep(parts.state.clock.now())
            await parts.windows.purge()
        except Exception:
            logger.warning("could not purge expired sessions and reservations", exc_info=True)


@asynccontextmanager
async def _lifespan(parts: _Parts, app: FastAPI) -> AsyncIterator[None]:
    services, settings = parts.state, parts.state.settings
    purger: asyncio.Task[None] | None = None
    try:
        if settings.migrate_on_start:
            await upgrade_async(services.database.url)
        admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        await services.keys.ensure_admin(admin)
        await services.keys.generation.start()
        services.database.start()
        sessions_gauge = services.telemetry.metrics.active_sessions.labels()
        sessions_gauge.set(await services.sessions.active())  # before the first scrape refreshes it
        purger = asyncio.create_task(_purge_forever(parts))
        models = {agent.model for agent in services.agents.agents.values()}
        await warm_up(app, services.database, parts.pricer, models)
        if settings.gc_freeze:
            # Everything built at start-up (the app, SQLAlchemy's mappers, the price tables) lives as long
            # as the process: move it out of the collector's sight, so that a full collection walks only
            # what requests allocate. Without this, full collections stalled every request for tens of
            # milliseconds (p99 87 ms vs 27 ms, bench/agents_vs_litellm.py).
            gc.collect()
            gc.freeze()
        if settings.gc_threshold:
            # With 16 requests in flight a worker collected its youngest generation every 11 requests
            # (700 allocations), each time walking what the requests in flight hold: 3 % of its CPU.
            # Every 10,000 allocations the walks are as long and 14 times rarer: 6-9 % more chat
            # completions a second at 16 connections, in each of four alternated rounds (1,733 -> 1,842;
            # bench.settings_ab AGENTIC_GC_THRESHOLD=700 AGENTIC_GC_THRESHOLD=10000).
            gc.set_threshold(settings.gc_threshold, 20, 100)
        services.telemetry.loop_monitor.start()  # after start-up's own long steps: they are not a held loop
        services.drain.start()
        if parts.sampler is not None:
            parts.sampler.start()
        yield
    finally:
        if parts.sampler is not None:
            await parts.sampler.stop()
        await services.console_http.aclose()
        await services.drain.close()
        await cancel(purger)
        for provider in parts.providers.values():
            await provider.close()
        parts.tracing.shutdown()  # exports the spans still queued
        await services.cache.close()  # and its back-end
        await parts.windows.close()
        await services.keys.generation.close()
        await services.database.close()
        services.telemetry.close()


async def index(request: Request) -> Any:
    """What this is and where to look next. A browser (``Accept: text/html``) goes to the console."""
    if console.wants_html(request):
        return RedirectResponse("/console/", status_code=303)
    return {
        "console": "/console/",
        "service": "agentic-backend",
        "version": __version__,
        "docs": "/docs",
        "health": "/api/v1/monitoring/health",
        "metrics": "/api/v1/monitoring/metrics",
    }


# Every router of the service, in the order requests are matched against their routes.
ROUTERS = (
    openai_router,
    agents_router,
    responses_router,
    monitoring_router,
    keys_router,
    sessions_router,
    usage_router,
    console.api,
    console.pages,
)


def _install_routes(app: FastAPI) -> None:
    """The service's routes, ahead of FastAPI's documentation routes, the agent routes first: the app
    tries each route in turn, and no two share a path, so the order only sets how many a request walks past.

    Each router's routes go straight into the app's list (Starlette's ``routes``), not through
    ``include_router``: FastAPI 0.165 wraps an included router in a route of its own, and a request then
    walks the app's routes to the router, and the router's routes twice (to match, then to handle), setting
    and restoring a scope context at each; 7 % of a chat completion's instructions
    (bench.service_instructions: 2,394k -> 2,231k). The routers carry their prefix, tags and schema
    inclusion themselves and have no dependencies of their own (what ``include_router`` would add), so the
    OpenAPI document is the same; tests/unit/test_routes.py holds both."""
    documentation = list(app.router.routes)  # /openapi.json, /docs, /redoc and their assets
    app.router.routes.clear()
    app.add_api_route("/", index, methods=["GET"], tags=["service"], response_model=dict[str, str])
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    app.router.routes.extend(documentation)


def _install_middleware(app: FastAPI, settings: Settings, parts: _Parts) -> None:
    """Innermost first: HEAD routed as GET, the body limit, JSON request logs, tracing, then the HTTP
    metrics outermost, so that they time and count everything, refusals included."""
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.log_format == "json":
        app.add_middleware(RequestLogMiddleware)
    if parts.tracing.enabled:  # core/tracing.py: only then is anything of tracing on the request path
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app.add_middleware(TraceIdMiddleware)
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=parts.tracing.provider, exclude_spans=["send", "receive"]
        )
    if settings.drain_file is not None:
        app.add_middleware(CloseWhileDraining, drain=parts.state.drain)
    telemetry = parts.state.telemetry
    app.add_middleware(
        HttpMetricsMiddleware,
        metrics=telemetry.metrics,
        exemplars=telemetry.exemplars,
        loop_monitor=telemetry.loop_monitor,
    )
