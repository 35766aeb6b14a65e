"""FastAPI dependencies of the monitoring feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend import state
from agentic_backend.core.drain import Drain
from agentic_backend.monitoring.health import HealthCheck
from agentic_backend.monitoring.service import Telemetry
from agentic_backend.monitoring.summary import KeySpendSource


async def get_telemetry(request: Request) -> Telemetry:
    return state.of(request.app).telemetry


async def get_health_checks(request: Request) -> list[HealthCheck]:
    return state.of(request.app).health_checks


async def get_key_spend(request: Request) -> KeySpendSource | None:
    return state.of(request.app).key_spend


async def get_drain(request: Request) -> Drain:
    return state.of(request.app).drain


DrainDep = Annotated[Drain, Depends(get_drain)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
HealthChecksDep = Annotated[list[HealthCheck], Depends(get_health_checks)]
KeySpendDep = Annotated[KeySpendSource | None, Depends(get_key_spend)]
