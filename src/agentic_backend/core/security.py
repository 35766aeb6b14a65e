"""The single place where routes are guarded by permission.

``RequirePermission("monitoring:write")`` is a FastAPI dependency; it asks the application's ``Authorizer``
(``app.state.authorizer``). Until identity exists the authorizer allows everything; the identity feature
replaces it with one that authenticates the caller and checks the role's permissions.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from fastapi import Request

from agentic_backend.core.errors import Unauthorized


class Authorizer(Protocol):
    async def authorize(self, request: Request, permission: str) -> None:
        """Return if the caller holds ``permission``; raise ``Unauthorized`` or ``Forbidden`` otherwise."""


class AllowAll:
    """The authorizer of a service without identity: every caller holds every permission."""

    async def authorize(self, request: Request, permission: str) -> None:
        return None


class RequirePermission:
    """A dependency that lets the request through only if the caller holds ``permission``."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> None:
        authorizer: Authorizer = request.app.state.authorizer
        await authorizer.authorize(request, self.permission)


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
