"""Console sign-in: an API key exchanged for a browser session, so that the key itself never sits in the
browser (no URL, no ``localStorage``).

The cookie (``COOKIE``) is HttpOnly, SameSite=Strict, ``Secure`` under TLS, and holds a random token whose
SHA-256 is the row's key. Each request looks the session up joined with its key: a revoked key, an expired
or deleted session (sign-out) ends it at once, on every worker and replica. A request that changes
something with the cookie must carry the session's CSRF token in ``X-CSRF-Token`` (SameSite=Strict already
keeps other sites' requests from carrying the cookie; the token also covers same-site subdomains).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from agentic_backend.console.models import ConsoleSession
from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Database
from agentic_backend.identity.models import ApiKey
from agentic_backend.identity.schemas import Principal
from agentic_backend.identity.service import principal_of
from agentic_backend.sessions.service import aware

COOKIE = "agentic_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_BYTES = 32


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: datetime


class ConsoleSessions:
    def __init__(self, database: Database, clock: Clock, lifetime: timedelta) -> None:
        self._db = database
        self._clock = clock
        self.lifetime = lifetime

    async def create(self, principal: Principal) -> tuple[str, Session]:
        """A new session for a verified key: the cookie's token and the session."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._clock.now()
        row = ConsoleSession(
            token_hash=_digest(token),
            key_id=principal.key_id,
            csrf_token=secrets.token_urlsafe(_TOKEN_BYTES),
            created_at=now,
            expires_at=now + self.lifetime,
        )
        async with self._db.session() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            session.add(row)
            await session.commit()
        return token, Session(principal, row.csrf_token, row.expires_at)

    async def resolve(self, token: str) -> Session | None:
        """The session of a cookie, if it is live and its key is not revoked."""
        if not token or len(token) > 128:
            return None
        query = (
            select(ConsoleSession, ApiKey)
            .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
            .where(ConsoleSession.token_hash == _digest(token))
        )
        async with self._db.session() as session:
            found = (await session.execute(query)).first()
        if found is None:
            return None
        row, key = found
        expires = aware(row.expires_at)
        if key.revoked_at is not None or expires <= self._clock.now():
            return None
        return Session(principal_of(key), row.csrf_token, expires)

    async def end(self, token: str) -> None:
        async with self._db.session() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))
            await session.commit()


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf_token.encode())
