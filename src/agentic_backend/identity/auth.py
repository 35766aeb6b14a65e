"""The authorizer of the service: authenticates the API key, then checks the role's permission.

Every authentication counts in ``auth_attempts_total{method, result}`` (and a failure's reason in
``auth_failures_total{reason}``), every permission check in ``permission_checks_total{permission, result}``.
A missing, malformed, unknown or revoked key all get the same 401 body after the same work.
"""

from __future__ import annotations

from fastapi import Request

from agentic_backend.console.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, ConsoleSessions, csrf_matches
from agentic_backend.identity.errors import CsrfRejected, InvalidApiKey, PermissionDenied, TooManyFailures
from agentic_backend.identity.guard import BruteForceGuard
from agentic_backend.identity.permissions import Permission, allows
from agentic_backend.identity.schemas import Principal
from agentic_backend.identity.service import KeyService
from agentic_backend.monitoring.catalogue import BuiltinMetrics

API_KEY = "api_key"
CONSOLE_SESSION = "console_session"  # the console's cookie (console/sessions.py)
_MAX_HEADER = 1024


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``; "" if a header is there but unusable."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header[:_MAX_HEADER].partition(" ")
        return token.strip() if scheme.lower() == "bearer" and len(header) < _MAX_HEADER else ""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key.strip() if len(key) < _MAX_HEADER else ""
    return None


class ApiKeyAuthorizer:
    def __init__(
        self,
        keys: KeyService,
        guard: BruteForceGuard,
        metrics: BuiltinMetrics,
        console: ConsoleSessions | None = None,
    ) -> None:
        self._keys = keys
        self._console = console
        self._guard = guard
        self._attempts = metrics.auth_attempts
        self._failures = metrics.auth_failures
        self._checks = metrics.permission_checks
        metrics.expect_permissions(permission.value for permission in Permission)

    async def authenticate(self, request: Request) -> Principal:
        cached: Principal | None = getattr(request.state, "principal", None)
        if cached is not None:
            return cached
        key = presented_key(request)
        if key is None and self._console is not None and COOKIE in request.cookies:
            return await self._from_console(request, request.cookies[COOKIE])
        if key is None:
            self._fail("missing")
            raise InvalidApiKey()
        return await self.verify_key(request, key)

    async def verify_key(self, request: Request, key: str) -> Principal:
        """The principal of ``key``, counted, and throttled per address as every key check is."""
        principal, reason = await self._keys.verify(key) if key else (None, "malformed")
        if principal is None:
            # Only failing attempts are throttled: a valid key from the same address is served above.
            client = request.client.host if request.client is not None else "unknown"
            retry = await self._guard.retry_after(client)
            if retry is not None:
                self._fail("throttled")
                raise TooManyFailures(
                    f"Too many failed authentications from this address; try again in {retry} s.",
                    headers={"Retry-After": str(retry)},
                )
            await self._guard.failed(client)
            self._fail(reason)
            raise InvalidApiKey()
        self._attempts.labels(API_KEY, "success").inc()
        request.state.principal = principal
        return principal

    async def _from_console(self, request: Request, token: str) -> Principal:
        """A console session's principal; its CSRF token on any request that may change something."""
        assert self._console is not None
        session = await self._console.resolve(token)
        if session is None:  # signed out, expired, or its key revoked
            self._fail("unknown", CONSOLE_SESSION)
            raise InvalidApiKey()
        if request.method not in SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)):
            raise CsrfRejected(f"A console request that changes something needs the session's {CSRF_HEADER}.")
        self._attempts.labels(CONSOLE_SESSION, "success").inc()
        request.state.principal = session.principal
        request.state.console_session = session  # the session routes read it rather than look it up again
        return session.principal

    def _fail(self, reason: str, method: str = API_KEY) -> None:
        self._attempts.labels(method, "failure").inc()
        self._failures.labels(reason).inc()

    async def authorize(self, request: Request, permission: str) -> Principal:
        principal = await self.authenticate(request)
        request.state.key_id = principal.key_id  # for the request's log line (core/logs.py)
        if not allows(principal.role, permission):
            self._checks.labels(permission, "denied").inc()
            raise PermissionDenied(
                f"The key's role '{principal.role}' does not include the permission '{permission}'."
            )
        self._checks.labels(permission, "allowed").inc()
        return principal
