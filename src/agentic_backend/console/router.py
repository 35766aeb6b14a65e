"""The console's routes: its page and assets under ``/console``, and its JSON under ``/api/v1/console``.

The page is static (no build step, no CDN: ``static/``, with uPlot vendored); it signs in with an API key
exchanged for a session cookie (console/sessions.py), then reads the same API as any client, plus the
few aggregates below. Every route checks the same permissions as the API it mirrors, so what a role may
not do is neither shown nor possible.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from agentic_backend import state
from agentic_backend.billing.budget import month_of
from agentic_backend.billing.models import KeySpend, UsageRollup
from agentic_backend.billing.pricing import nanos_to_dollars
from agentic_backend.console.overview import (
    RANGES,
    Overview,
    PrometheusUnavailable,
    RangeName,
    embedded,
    from_prometheus,
)
from agentic_backend.console.sessions import COOKIE, ConsoleSessions, Session
from agentic_backend.core.config import Settings
from agentic_backend.core.errors import NotFound, ServiceUnavailable
from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.models import ApiKey
from agentic_backend.identity.permissions import ROLE_PERMISSIONS, Permission, Role, allows
from agentic_backend.identity.schemas import Principal

STATIC = Path(__file__).with_name("static")
# The page's policy: nothing but its own origin, no inline script or style, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

api = APIRouter(prefix="/api/v1/console", tags=["console"])
pages = APIRouter(include_in_schema=False)

MonitoringReader = Annotated[Principal, Depends(RequirePermission(Permission.MONITORING_READ))]
UsageReader = Annotated[Principal, Depends(RequirePermission(Permission.USAGE_READ))]


class Authenticated:
    """Any valid key or session, whatever its role (the session routes)."""

    async def __call__(self, request: Request) -> Principal:
        return await state.of(request.app).authorizer.authenticate(request)


Caller = Annotated[Principal, Depends(Authenticated())]


def _sessions(request: Request) -> ConsoleSessions:
    return state.of(request.app).console_sessions


def _settings(request: Request) -> Settings:
    return state.of(request.app).settings


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=256, description="An API key; it is not kept in the browser.")


class SessionInfo(BaseModel):
    key_id: int
    name: str
    role: str
    permissions: list[str]
    csrf_token: str | None = Field(
        description="Send as X-CSRF-Token on every request that changes something."
    )
    expires_at: datetime | None
    prometheus: bool = Field(description="The charts read Prometheus (AGENTIC_PROMETHEUS_URL).")
    alertmanager: bool
    traces_url: str | None = Field(description="A trace link template, {trace_id} where the id goes.")


def _info(
    principal: Principal, settings: Settings, csrf: str | None, expires: datetime | None
) -> SessionInfo:
    return SessionInfo(
        key_id=principal.key_id,
        name=principal.name,
        role=principal.role,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[Role(principal.role)]),
        csrf_token=csrf,
        expires_at=expires,
        prometheus=settings.prometheus_url is not None,
        alertmanager=settings.alertmanager_url is not None,
        traces_url=settings.traces_url,
    )


@api.post("/session", responses={401: {"description": "The key is not valid."}})
async def sign_in(body: SignIn, request: Request, response: Response) -> SessionInfo:
    """Exchange an API key for a console session: an HttpOnly, SameSite=Strict cookie (Secure under TLS)."""
    principal = await state.of(request.app).authorizer.verify_key(request, body.key)
    sessions = _sessions(request)
    token, session = await sessions.create(principal)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(sessions.lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return _info(principal, _settings(request), session.csrf_token, session.expires_at)


@api.get("/session", responses={401: {"description": "Not signed in."}})
async def current_session(request: Request, caller: Caller, response: Response) -> SessionInfo:
    """Who is signed in, and the session's CSRF token."""
    response.headers["Cache-Control"] = "no-store"
    session: Session | None = getattr(request.state, "console_session", None)  # None: a bearer key
    return _info(
        caller,
        _settings(request),
        session.csrf_token if session else None,
        session.expires_at if session else None,
    )


@api.delete("/session", status_code=204, responses={401: {"description": "Not signed in."}})
async def sign_out(request: Request, _: Caller) -> Response:
    """End the session (its cookie stops working at once, everywhere)."""
    await _sessions(request).end(request.cookies.get(COOKIE, ""))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@api.get("/overview", responses={503: {"description": "The configured Prometheus did not answer."}})
async def overview(
    request: Request,
    _: MonitoringReader,
    range: Annotated[RangeName, Query(description="15m, 1h, 6h or 24h.")] = "1h",
) -> Overview:
    """The dashboard's seed panels and service levels for a range, from Prometheus when configured, else
    from the service's own history."""
    settings = _settings(request)
    if settings.prometheus_url is not None:
        client = state.of(request.app).console_http
        try:
            return await from_prometheus(client, settings.prometheus_url, range)
        except PrometheusUnavailable as exc:
            raise ServiceUnavailable(
                f"{exc}; the charts need the Prometheus at AGENTIC_PROMETHEUS_URL."
            ) from None
    services = state.of(request.app)
    return await embedded(services.metric_history, services.telemetry.snapshot_async, range)


class SpendRow(BaseModel):
    name: str
    queries: int
    input_tokens: int
    output_tokens: int
    cost_dollars: float


class KeyBudget(SpendRow):
    key_id: int
    role: str
    revoked: bool
    budget_dollars: float | None
    spent_dollars: float = Field(description="Settled spend this month (the budget's own count).")
    reserved_dollars: float = Field(description="Held by queries in flight.")
    projected_dollars: float | None = Field(
        description="The month's cost at its pace so far (the ledger's); null for a month not under way."
    )
    rpm_limit: int | None
    tpm_limit: int | None


class Spend(BaseModel):
    month: str
    totals: SpendRow
    by_key: list[KeyBudget]
    by_model: list[SpendRow]
    by_agent_type: list[SpendRow]
    by_day: list[SpendRow]


_SUMS = (
    func.coalesce(func.sum(UsageRollup.queries), 0),
    func.coalesce(func.sum(UsageRollup.input_tokens), 0),
    func.coalesce(func.sum(UsageRollup.output_tokens), 0),
    func.coalesce(func.sum(UsageRollup.cost_nanodollars), 0),
)


def _row(name: str, values: Any) -> dict[str, Any]:
    queries, input_tokens, output_tokens, nanos = values
    return {
        "name": name,
        "queries": int(queries),
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "cost_dollars": nanos_to_dollars(int(nanos)),
    }


@api.get("/spend")
async def spend(
    request: Request,
    principal: UsageReader,
    month: Annotated[
        str | None,
        Query(pattern=r"^(19[7-9]\d|[2-9]\d{3})-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC), 1970 on."),
    ] = None,
) -> Spend:
    """A month's cost, tokens and queries by key, model, agent type and day, from the ledger's rollups (the
    same cents as ``GET /api/v1/usage`` over the month), with each key's budget and limits. A key without
    ``usage:admin`` sees only its own."""
    now = datetime.now(UTC)
    month = month or month_of(now)
    year, number = int(month[:4]), int(month[5:])
    days = calendar.monthrange(year, number)[1]
    conditions = [UsageRollup.day >= f"{month}-01", UsageRollup.day <= f"{month}-{days:02d}"]
    if not allows(principal.role, Permission.USAGE_ADMIN):
        conditions.append(UsageRollup.key_id == principal.key_id)
    settings = _settings(request)
    database = state.of(request.app).database
    async with database.session() as session:

        async def grouped(column: Any) -> list[Any]:
            query = select(column, *_SUMS).where(*conditions).group_by(column).order_by(column)
            return list((await session.execute(query)).all())

        totals = (await session.execute(select(*_SUMS).where(*conditions))).one()
        by_model = await grouped(UsageRollup.model)
        by_agent = await grouped(UsageRollup.agent_type)
        by_day = await grouped(UsageRollup.day)
        by_key_sums = {row[0]: row[1:] for row in await grouped(UsageRollup.key_id)}
        keys_query = select(ApiKey, KeySpend).outerjoin(
            KeySpend, (KeySpend.key_id == ApiKey.id) & (KeySpend.month == month)
        )
        if not allows(principal.role, Permission.USAGE_ADMIN):
            keys_query = keys_query.where(ApiKey.id == principal.key_id)
        keys = (await session.execute(keys_query.order_by(ApiKey.id))).all()
    elapsed = _elapsed_share(now, year, number, days)
    by_key = []
    for key, spent in keys:
        sums = by_key_sums.get(key.id, (0, 0, 0, 0))
        if key.revoked_at is not None and not sums[0]:
            continue  # a revoked key that spent nothing this month
        spent_dollars = nanos_to_dollars(spent.spent_nanodollars) if spent else 0.0
        by_key.append(
            KeyBudget(
                **_row(key.name, sums),
                key_id=key.id,
                role=key.role,
                revoked=key.revoked_at is not None,
                budget_dollars=key.monthly_budget_dollars
                if key.monthly_budget_dollars is not None
                else settings.default_monthly_budget_dollars,
                spent_dollars=spent_dollars,
                reserved_dollars=nanos_to_dollars(spent.reserved_nanodollars) if spent else 0.0,
                projected_dollars=round(nanos_to_dollars(int(sums[3])) / elapsed, 6) if elapsed else None,
                rpm_limit=key.rpm_limit if key.rpm_limit is not None else settings.default_rpm_limit,
                tpm_limit=key.tpm_limit if key.tpm_limit is not None else settings.default_tpm_limit,
            )
        )
    by_key.sort(key=lambda k: (-k.cost_dollars, k.key_id))
    return Spend(
        month=month,
        totals=SpendRow(**_row("total", totals)),
        by_key=by_key,
        by_model=[SpendRow(**_row(r[0], r[1:])) for r in by_model],
        by_agent_type=[SpendRow(**_row(r[0], r[1:])) for r in by_agent],
        by_day=[SpendRow(**_row(r[0], r[1:])) for r in by_day],
    )


def _elapsed_share(now: datetime, year: int, month: int, days: int) -> float | None:
    """The share of the month gone by (for the projection); None for a month not under way."""
    start = datetime(year, month, 1, tzinfo=UTC)
    if not start <= now < start + timedelta(days=days):
        return None
    return max((now - start) / timedelta(days=days), 1 / (days * 24))  # at least an hour's worth


class Alert(BaseModel):
    name: str
    severity: str
    state: str
    summary: str
    since: str | None


class Alerts(BaseModel):
    configured: bool
    source: str | None
    alerts: list[Alert]
    how: str | None = Field(description="When nothing is configured: how to run the alerts.")


# What needs a person first: firing before pending before silenced or inhibited (Prometheus says firing and
# pending, Alertmanager active, unprocessed and suppressed), then the most severe, then the oldest.
_STATES = {"firing": 0, "active": 0, "pending": 1, "unprocessed": 1, "suppressed": 2}
_SEVERITIES = {"critical": 0, "page": 0, "error": 1, "warning": 2, "info": 3}


def ordered(alerts: list[Alert]) -> list[Alert]:
    """The alerts in the order a person on call reads them (above)."""
    return sorted(
        alerts,
        key=lambda a: (_STATES.get(a.state, 1), _SEVERITIES.get(a.severity, 4), a.since or "", a.name),
    )


@api.get(
    "/alerts", responses={503: {"description": "The configured Alertmanager or Prometheus did not answer."}}
)
async def alerts(request: Request, _: MonitoringReader) -> Alerts:
    """What fires now: from Alertmanager (AGENTIC_ALERTMANAGER_URL), else Prometheus's alerts."""
    settings = _settings(request)
    client = state.of(request.app).console_http
    try:
        if settings.alertmanager_url is not None:
            answer = await client.get(
                f"{settings.alertmanager_url}/api/v2/alerts", params={"active": "true"}, timeout=10
            )
            answer.raise_for_status()
            found = [
                Alert(
                    name=str(a["labels"].get("alertname", "")),
                    severity=str(a["labels"].get("severity", "")),
                    state=str(a.get("status", {}).get("state", "active")),
                    summary=str(a.get("annotations", {}).get("summary", "")),
                    since=a.get("startsAt"),
                )
                for a in answer.json()
            ]
            return Alerts(configured=True, source="alertmanager", alerts=ordered(found), how=None)
        if settings.prometheus_url is not None:
            answer = await client.get(f"{settings.prometheus_url}/api/v1/alerts", timeout=10)
            answer.raise_for_status()
            found = [
                Alert(
                    name=str(a["labels"].get("alertname", "")),
                    severity=str(a["labels"].get("severity", "")),
                    state=str(a.get("state", "")),
                    summary=str(a.get("annotations", {}).get("summary", "")),
                    since=a.get("activeAt"),
                )
                for a in answer.json()["data"]["alerts"]
            ]
            return Alerts(configured=True, source="prometheus", alerts=ordered(found), how=None)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ServiceUnavailable(f"The alerts' source did not answer: {type(exc).__name__}.") from None
    return Alerts(
        configured=False,
        source=None,
        alerts=[],
        how="Alerts are Prometheus rules (monitoring/alerts/). Run `uv run agentic-backend stack up` to "
        "start Prometheus and Alertmanager beside the service, then restart it with the "
        "AGENTIC_PROMETHEUS_URL and AGENTIC_ALERTMANAGER_URL that `stack up` prints.",
    )


def _page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@pages.get("/console")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@pages.get("/console/")
async def console_page() -> FileResponse:
    return _page()


_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


@pages.get("/console/assets/{name:path}")
async def console_asset(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file() or path.suffix not in _ASSET_TYPES:
        raise NotFound("No such console asset.")
    return FileResponse(path, media_type=_ASSET_TYPES[path.suffix], headers=PAGE_HEADERS)


def wants_html(request: Request) -> bool:
    """A browser navigating: ``Accept`` names text/html (API clients send */* or application/json)."""
    return "text/html" in request.headers.get("accept", "")


__all__ = ["RANGES", "api", "pages", "wants_html"]
