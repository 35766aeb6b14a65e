"""The application factory. Nothing is built at import time: ``create_app(settings)`` makes a new app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentic_backend import __version__
from agentic_backend.core.config import Settings
from agentic_backend.core.errors import install_error_handlers
from agentic_backend.core.security import AllowAll
from agentic_backend.monitoring.health import metrics_checks
from agentic_backend.monitoring.middleware import HttpMetricsMiddleware
from agentic_backend.monitoring.router import router as monitoring_router
from agentic_backend.monitoring.service import Telemetry


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``uvicorn --factory agentic_backend.app:create_app`` reads settings from the
    environment; tests pass their own."""
    settings = settings or Settings()
    telemetry = Telemetry(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            telemetry.close()

    app = FastAPI(
        title="Agentic Backend",
        version=__version__,
        summary="LLM agents for backend teams, with production monitoring built in.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.authorizer = AllowAll()
    app.state.health_checks = metrics_checks(telemetry, settings.custom_metrics_max_series_total)
    install_error_handlers(app)
    app.include_router(monitoring_router)
    app.add_middleware(HttpMetricsMiddleware, metrics=telemetry.metrics)
    return app
