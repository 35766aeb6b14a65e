"""Component health for ``GET /health``: each check says ok, degraded or down, and why, without secrets.

The service is ``down`` (HTTP 503) only when a component it cannot work without is down; a component that
is down but optional, or degraded, makes the whole ``degraded`` (HTTP 200): still serving, look closer.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentic_backend.metricstore.registry import SERIES_OVERFLOW
from agentic_backend.monitoring.schemas import ComponentHealth, ComponentStatus
from agentic_backend.monitoring.service import Telemetry


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    check: Callable[[], Awaitable[ComponentHealth]]
    critical: bool = True


def overall(components: dict[str, ComponentHealth], critical: set[str]) -> ComponentStatus:
    status: ComponentStatus = "ok"
    for name, health in components.items():
        if health.status == "down" and name in critical:
            return "down"
        if health.status != "ok":
            status = "degraded"
    return status


def metrics_checks(telemetry: Telemetry, max_custom_series: int) -> list[HealthCheck]:
    async def metrics_store() -> ComponentHealth:
        folder = telemetry.workers.folder if telemetry.workers is not None else None
        if folder is not None and not os.access(folder, os.W_OK):
            return ComponentHealth(status="down", detail="the multiprocess metrics folder is not writable")
        family = telemetry.registry.get(SERIES_OVERFLOW.name)
        folded = sum(s.get() for s in family.series()) if family is not None else 0.0
        if folded:
            return ComponentHealth(
                status="degraded",
                detail=f"{folded:.0f} updates folded into __overflow__ series: a label has too many values",
            )
        mode = "multiprocess" if folder is not None else "single process"
        return ComponentHealth(status="ok", detail=f"{telemetry.registry.series_count()} series ({mode})")

    async def custom_metrics() -> ComponentHealth:
        used = telemetry.custom.registry.series_count()
        used_bytes, max_bytes = telemetry.custom.bytes_used, telemetry.custom.max_bytes
        detail = (
            f"{used} of {max_custom_series} custom series used, "
            f"{used_bytes / 1_048_576:.1f} of {max_bytes / 1_048_576:.1f} MiB"
        )
        if used >= 0.9 * max_custom_series or used_bytes >= 0.9 * max_bytes:
            return ComponentHealth(status="degraded", detail=f"{detail} (over 90%)")
        return ComponentHealth(status="ok", detail=detail)

    return [
        HealthCheck("metrics", metrics_store),
        HealthCheck("custom_metrics", custom_metrics, critical=False),
    ]
