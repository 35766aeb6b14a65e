"""The monitoring API under ``/api/v1/monitoring``: metrics, summary, health and custom-metric records."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from agentic_backend import __version__, state
from agentic_backend.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from agentic_backend.core.security import RequirePermission, require_static_token
from agentic_backend.identity.permissions import Permission, allows
from agentic_backend.identity.schemas import Principal
from agentic_backend.metricstore.exposition import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    stream_exposition,
)
from agentic_backend.monitoring.errors import InvalidMetric
from agentic_backend.monitoring.health import HealthCheck, overall
from agentic_backend.monitoring.schemas import (
    ComponentHealth,
    CustomMetricRecord,
    CustomMetricType,
    HealthResponse,
    RecordResponse,
    parse_record,
)
from agentic_backend.monitoring.service import Telemetry
from agentic_backend.monitoring.summary import KeySpend, MonitoringSummary, build_summary

# The full prefix is on the router itself: the route template in metrics is the route's own path.
router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"])

_HEALTH_CHECK_TIMEOUT = 2.0
_RECORD_TYPES = frozenset(t.value for t in CustomMetricType)


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip().removeprefix("q=")
            return not q or q.strip() not in ("0", "0.0", "0.00", "0.000")
    return False


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Every metric in Prometheus text format 0.0.4, or OpenMetrics 1.0 when the Accept "
            "header asks for application/openmetrics-text; gzip-compressed when Accept-Encoding allows.",
            "content": {"text/plain": {}, "application/openmetrics-text": {}},
        },
        401: {"description": "AGENTIC_METRICS_TOKEN is set and the bearer token is missing or wrong."},
    },
)
async def metrics(request: Request) -> Response:
    services = state.of(request.app)  # not dependencies: state.py
    telemetry, settings = services.telemetry, services.settings
    if settings.metrics_token is not None:
        require_static_token(request, settings.metrics_token.get_secret_value(), realm="metrics")
    openmetrics = "application/openmetrics-text" in request.headers.get("accept", "")
    gzip = _accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-store"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    await telemetry.refresh()
    return StreamingResponse(
        stream_exposition(
            await telemetry.snapshot_async(),
            openmetrics=openmetrics,
            gzip=gzip,
            exemplars=telemetry.exemplars,
        ),
        media_type=CONTENT_TYPE_OPENMETRICS if openmetrics else CONTENT_TYPE_TEXT,
        headers=headers,
    )


@router.get("/summary")
async def summary(
    request: Request,
    principal: Annotated[Principal, Depends(RequirePermission(Permission.MONITORING_READ))],
) -> MonitoringSummary:
    """The metrics in one JSON document. ``spend_by_key`` lists every key for a caller with
    ``usage:admin`` (what ``GET /api/v1/usage?key_id=`` shows it), and only the caller's own key for
    anyone else: an aggregate never shows what its detail route refuses."""
    services = state.of(request.app)  # not dependencies: state.py
    telemetry, key_spend = services.telemetry, services.key_spend
    await telemetry.refresh()
    result = build_summary(  # the merge yields to the loop between workers, as a scrape's does
        await telemetry.snapshot_async(),
        uptime_seconds=telemetry.uptime_seconds(),
        multiprocess=telemetry.multiprocess,
    )
    if key_spend is not None:  # the billing feature's ledger totals
        every_key = allows(principal.role, Permission.USAGE_ADMIN)
        result.spend_by_key = [
            KeySpend.model_validate(row, from_attributes=True)
            for row in await key_spend()
            if every_key or row.key_id == principal.key_id
        ]
    return result


@router.get(
    "/health", responses={503: {"model": HealthResponse, "description": "A critical component is down."}}
)
async def health(request: Request, response: Response) -> HealthResponse:
    """Each component ``ok``, ``degraded`` or ``down`` with a reason; 503 when a critical one is down."""
    services = state.of(request.app)  # not dependencies: state.py
    return await _health(services.health_checks, services.telemetry, response)


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/live")
async def live() -> Liveness:
    """Liveness: the process answers. It asks nothing of the database or Redis, so an outage of either
    never restarts every pod (Kubernetes' livenessProbe)."""
    return Liveness()


@router.get(
    "/ready",
    responses={503: {"model": HealthResponse, "description": "Not ready: a critical component is down."}},
)
async def ready(request: Request, response: Response) -> HealthResponse:
    """Readiness: the service can serve now, its critical components (the database) answering; 503
    otherwise, so a load balancer sends its requests elsewhere (Kubernetes' readinessProbe). 503 too while
    it drains before a stop (``AGENTIC_DRAIN_FILE``); once stopping, its listener is closed."""
    services = state.of(request.app)  # not dependencies: state.py
    result = await _health(services.health_checks, services.telemetry, response)
    if services.drain.active:
        result.components["lifecycle"] = ComponentHealth(status="down", detail="draining: this replica stops")
        result.status = "down"
        response.status_code = 503
    return result


async def _health(checks: list[HealthCheck], telemetry: Telemetry, response: Response) -> HealthResponse:
    async def run(check: HealthCheck) -> ComponentHealth:
        try:
            async with asyncio.timeout(_HEALTH_CHECK_TIMEOUT):
                return await check.check()
        except TimeoutError:
            return ComponentHealth(status="down", detail=f"no answer within {_HEALTH_CHECK_TIMEOUT:g} s")
        except Exception as exc:  # a failing check is a finding, not a failure of /health
            return ComponentHealth(status="down", detail=f"check failed: {type(exc).__name__}")

    results = await asyncio.gather(*(run(c) for c in checks))
    components = {c.name: r for c, r in zip(checks, results, strict=True)}
    status = overall(components, {c.name for c in checks if c.critical})
    if status == "down":
        response.status_code = 503
    return HealthResponse(
        status=status, version=__version__, uptime_seconds=telemetry.uptime_seconds(), components=components
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = (
        f"the body is larger than {limit} bytes (AGENTIC_CUSTOM_METRICS_MAX_BODY_BYTES); send fewer records."
    )
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(body)


_ONLY_FOR = {
    "operation": "'operation' applies to gauges only (counters add, histograms observe).",
    "buckets": "'buckets' applies to histograms only.",
}


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        # The first location is the record's type (the union's tag): say the field alone.
        loc = err["loc"][1:] if err["loc"] and err["loc"][0] in _RECORD_TYPES else err["loc"]
        if err["type"] == "extra_forbidden" and loc and loc[-1] in _ONLY_FOR:
            problems.append(_ONLY_FOR[str(loc[-1])])
            continue
        location = ".".join(str(p) for p in loc) or "record"
        problems.append(f"{location}: {err['msg']}")
    return "; ".join(problems)


def _parse_records(data: object, max_batch: int) -> list[CustomMetricRecord]:
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, (list, dict)):
        raise InvalidMetric("the body must be a JSON object (one record) or an array of records.")
    if not items:
        raise InvalidMetric("the array of records is empty; send at least one record.")
    if len(items) > max_batch:
        raise InvalidMetric(
            f"{len(items)} records in one request; at most {max_batch} (AGENTIC_CUSTOM_METRICS_MAX_BATCH)."
        )
    records = []
    for index, item in enumerate(items):
        try:
            records.append(parse_record(item))
        except ValidationError as exc:
            where = f"record {index}: " if isinstance(data, list) else ""
            raise InvalidMetric(f"{where}{_validation_message(exc)}") from None
    return records


@router.post(
    "/record",
    status_code=200,
    dependencies=[Depends(RequirePermission("monitoring:write"))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/CustomMetricRecord"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/CustomMetricRecord"}},
                        ]
                    }
                }
            },
        }
    },
    responses={
        409: {
            "description": "The record conflicts with an existing or reserved metric, or would make its "
            "series infinite."
        },
        413: {"description": "The body is too large."},
        415: {"description": "The body is not JSON."},
        422: {"description": "A record is invalid, or would pass a series cap."},
    },
)
async def record(request: Request) -> RecordResponse:
    """Record custom metrics: counters (inc), gauges (set, inc, dec) and histograms (observe).

    A batch (JSON array) is applied all or nothing. Accepted metrics appear at /metrics at once.
    """
    services = state.of(request.app)  # not dependencies: state.py
    telemetry, settings = services.telemetry, services.settings
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send the records as JSON with 'Content-Type: application/json'.")
    body = await _read_body(request, settings.custom_metrics_max_body_bytes)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, json.JSONDecodeError) else "it cannot be decoded"
        raise BadRequest(f"the body is not valid JSON: {reason}.") from None
    records = _parse_records(data, settings.custom_metrics_max_batch)
    results = telemetry.custom.record(records)
    return RecordResponse(accepted=len(results), metrics=results)
