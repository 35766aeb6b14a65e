"""The application factory. Nothing is built at import time: ``create_app(settings)`` makes a new app,
and its lifespan opens (and closes) the database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio.lowlevel
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from agentic_backend import __version__
from agentic_backend.agents.openai_api import router as openai_router
from agentic_backend.agents.registry import load_agent_types
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
from agentic_backend.core.bodylimit import BodyLimitMiddleware
from agentic_backend.core.clock import Clock, SystemClock
from agentic_backend.core.config import Settings
from agentic_backend.core.db import Database, upgrade_async
from agentic_backend.core.docs import install_docs
from agentic_backend.core.errors import install_error_handlers
from agentic_backend.core.logs import RequestLogMiddleware
from agentic_backend.core.openapi import contract_openapi
from agentic_backend.core.tracing import TraceIdMiddleware, Tracing
from agentic_backend.identity.auth import ApiKeyAuthorizer
from agentic_backend.identity.guard import BruteForceGuard
from agentic_backend.identity.router import router as keys_router
from agentic_backend.identity.service import KeyService
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
        async with database.engine.connect() as connection:
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


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service. ``uvicorn --factory agentic_backend.app:create_app`` reads settings from the
    environment; tests pass their own (and a clock they control)."""
    settings = settings or Settings()
    clock = clock or SystemClock()
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
    active_sessions = telemetry.metrics.active_sessions.labels()
    backend: CacheBackend = (
        RedisCache(settings.redis_url) if settings.redis_url else MemoryCache(settings.cache_max_bytes)
    )
    cache = ResponseCache(backend, telemetry.metrics, settings.cache_ttl_seconds)
    if backend.shared:
        telemetry.share_between_workers(telemetry.metrics.cache_size.spec.name)
    ledger = Ledger(database)
    budgets = Budgets(database)
    pricer = Pricer(settings.model_prices)
    providers = build_providers(settings)
    tracing = Tracing()
    if tracing.enabled:  # each latency bucket and the cost counter keep a recent trace (exemplars.py)
        names = (cat.HTTP_DURATION.name, cat.AGENT_DURATION.name, cat.LLM_DURATION.name, cat.API_COST.name)
        telemetry.exemplars = Exemplars(frozenset(names))
    agents = AgentService(
        load_agent_types(settings.agents_file),
        providers,
        pricer=pricer,
        cache=cache,
        budgets=budgets,
        limiter=windows,
        sessions=sessions,
        ledger=ledger,
        metrics=telemetry.metrics,
        limits=Limits(
            default_monthly_budget_dollars=settings.default_monthly_budget_dollars,
            default_rpm_limit=settings.default_rpm_limit,
            default_tpm_limit=settings.default_tpm_limit,
            query_cost_estimate_dollars=settings.query_cost_estimate_dollars,
            reservation_grace_seconds=settings.budget_reservation_grace_seconds,
            cache_per_key=settings.cache_scope == "key",
        ),
        clock=clock,
        tracer=tracing.tracer,
        exemplars=telemetry.exemplars,
    )

    async def cache_size() -> None:
        await cache.refresh_size()

    async def count_sessions() -> None:
        active_sessions.set(await sessions.count_active())

    async def purge_expired_sessions() -> None:
        while True:
            await asyncio.sleep(_PURGE_INTERVAL)
            try:
                await sessions.purge_expired()
                # Reservations of model calls whose worker died mid-call (the next reservation for the
                # same key releases them too).
                await budgets.sweep(clock.now())
                await windows.purge()
            except Exception:
                logger.warning("could not purge expired sessions and reservations", exc_info=True)

    # The console's charts: Prometheus when configured, else a history this service keeps. One worker of
    # a run (slot 0) writes it; every worker reads it.
    run = settings.metrics_multiprocess_dir.name if settings.metrics_multiprocess_dir else None
    history = History(
        database,
        leaves_of(t.expr for p in PANELS for t in p.targets),
        run or f"run-{uuid.uuid4().hex[:12]}",
        settings.history_interval_seconds,
    )
    sampler = (
        Sampler(history, telemetry.snapshot_async)
        if settings.prometheus_url is None and telemetry.worker_slot.number == 0
        else None
    )
    console_http = httpx.AsyncClient()  # to Prometheus and Alertmanager, when configured

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        purger: asyncio.Task[None] | None = None
        try:
            if settings.migrate_on_start:
                await upgrade_async(database.url)
            admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
            await keys.ensure_admin(admin)
            await keys.generation.start()
            database.start()
            await count_sessions()
            purger = asyncio.create_task(purge_expired_sessions())
            await warm_up(app, database, pricer, {agent.model for agent in agents.agents.values()})
            if settings.gc_freeze:
                # Everything built at start-up (the app, SQLAlchemy's mappers, the price tables) lives as
                # long as the process: move it out of the collector's sight, so that a full collection
                # walks only what requests allocate. Without this, full collections stalled every
                # request for tens of milliseconds (p99 87 ms vs 27 ms, bench/agents_vs_litellm.py).
                gc.collect()
                gc.freeze()
            telemetry.loop_monitor.start()  # after start-up's own long steps: they are not a held loop
            if sampler is not None:
                sampler.start()
            yield
        finally:
            if sampler is not None:
                await sampler.stop()
            await console_http.aclose()
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            for provider in providers.values():
                await provider.close()
            tracing.shutdown()  # exports the spans still queued
            await backend.close()
            await windows.close()
            await keys.generation.close()
            await database.close()
            telemetry.close()

    app = FastAPI(
        title="Agentic Backend",
        version=__version__,
        summary="LLM agents for backend teams, with production monitoring built in.",
        lifespan=lifespan,
        docs_url=None,  # core/docs.py serves them without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.telemetry = telemetry
    app.state.database = database
    app.state.keys = keys
    app.state.sessions = sessions
    app.state.agents = agents
    app.state.ledger = ledger
    app.state.key_spend = ledger.totals_by_key
    app.state.cache = cache
    app.state.console_sessions = ConsoleSessions(
        database, clock, timedelta(hours=settings.console_session_hours)
    )
    app.state.metric_history = history
    app.state.console_http = console_http
    app.state.authorizer = ApiKeyAuthorizer(keys, guard, telemetry.metrics, app.state.console_sessions)
    telemetry.add_refresher(count_sessions)
    telemetry.add_refresher(cache_size)
    app.state.health_checks = [
        _database_check(database),
        HealthCheck("cache", cache.health, critical=False),
        *metrics_checks(telemetry, settings.custom_metrics_max_series_total),
    ]
    install_error_handlers(app)
    install_docs(app, "Agentic Backend")
    app.openapi = lambda: contract_openapi(  # type: ignore[method-assign]
        app,
        {"CustomMetricRecord": CustomMetricRecord},
        lambda schema: _refine_openapi(schema, settings, sorted(agents.agents)),
    )

    @app.get("/", tags=["service"], response_model=dict[str, str])
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

    app.include_router(monitoring_router)
    app.include_router(keys_router)
    app.include_router(sessions_router)
    app.include_router(agents_router)
    app.include_router(openai_router)
    app.include_router(usage_router)
    app.include_router(console.api)
    app.include_router(console.pages)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # inside the metrics'
    if settings.log_format == "json":
        app.add_middleware(RequestLogMiddleware)
    if tracing.enabled:  # core/tracing.py: only then is anything of tracing on the request path
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app.add_middleware(TraceIdMiddleware)
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracing.provider, exclude_spans=["send", "receive"]
        )
    app.add_middleware(HttpMetricsMiddleware, metrics=telemetry.metrics, exemplars=telemetry.exemplars)
    return app
