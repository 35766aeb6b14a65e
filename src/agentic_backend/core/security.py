"""The single place where routes are guarded by permission.

``RequirePermission("monitoring:write")`` is a FastAPI dependency; it asks the application's ``Authorizer``
(``app.state.authorizer``, the identity feature's API-key authorizer) and returns the caller's principal.
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from fastapi import Request

from agentic_backend.core.config import Settings
from agentic_backend.core.errors import Unauthorized


class Authorizer(Protocol):
    async def authorize(self, request: Request, permission: str) -> Any:
        """Return the caller's principal if it holds ``permission``; raise ``Unauthorized`` or ``Forbidden``
        (or ``LimitExceeded``) otherwise."""


class CoreState(Protocol):
    """What ``core`` reads of the application's state (``agentic_backend.state.AppState``, which it cannot
    import: core knows no feature)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def authorizer(self) -> Authorizer: ...


def core_state(request: Request) -> CoreState:
    state: CoreState = request.app.state.services
    return state


class RequirePermission:
    """A dependency that lets the request through only if the caller holds ``permission``; its value is
    the caller's principal."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> Any:
        return await core_state(request).authorizer.authorize(request, self.permission)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_static_token(request: Request, expected: str, *, realm: str) -> None:
    """Check ``Authorization: Bearer <token>`` against a configured secret, in constant time."""
    given = bearer_token(request)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(
            f"{realm} needs 'Authorization: Bearer <token>' with the configured token.",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
        )
