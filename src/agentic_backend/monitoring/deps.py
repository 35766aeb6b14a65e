"""FastAPI dependencies of the monitoring feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend.monitoring.health import HealthCheck
from agentic_backend.monitoring.service import Telemetry


async def get_telemetry(request: Request) -> Telemetry:
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


async def get_health_checks(request: Request) -> list[HealthCheck]:
    checks: list[HealthCheck] = request.app.state.health_checks
    return checks


TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
HealthChecksDep = Annotated[list[HealthCheck], Depends(get_health_checks)]
