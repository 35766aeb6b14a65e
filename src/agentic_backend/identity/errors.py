"""Errors of the identity feature (see ``core.errors`` for the whole hierarchy)."""

from __future__ import annotations

from agentic_backend.core.errors import (
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    Unauthorized,
    Unprocessable,
)


class InvalidApiKey(Unauthorized):
    """No API key, or one that is unknown, revoked or malformed: one answer for all, so that a caller
    cannot tell which."""

    def __init__(self) -> None:
        super().__init__(
            "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="agentic-backend"'},
        )


class PermissionDenied(Forbidden):
    """A valid key whose role lacks the permission."""


class CsrfRejected(Forbidden):
    """A console session's request that changes something without its CSRF token."""


class TooManyFailures(LimitExceeded):
    """Too many failed authentications from one client address."""


class KeyNameTaken(Conflict):
    """An API key with this name exists."""


class KeyNotFound(NotFound):
    """No API key with this id or name."""


class InvalidKeyRequest(Unprocessable):
    """A key cannot be created as asked (unknown role, bad name)."""


class OwnKeyRevocation(Conflict):
    """An admin revoking the very key it authenticated with (HTTP 409): it would lock itself out."""
