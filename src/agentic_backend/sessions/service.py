"""Sessions: create, read, delete, append history, and count the unexpired ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Database
from agentic_backend.core.errors import NotFound
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Message
from agentic_backend.sessions.models import AgentSession, SessionMessage
from agentic_backend.sessions.schemas import MessagePublic, SessionPublic


class SessionNotFound(NotFound):
    """No unexpired session with this id belongs to the caller's key."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"No session {session_id} for this API key: it never existed, expired or was deleted."
        )


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class SessionService:
    def __init__(self, database: Database, clock: Clock, idle_ttl: timedelta) -> None:
        self._db = database
        self._clock = clock
        self._ttl = idle_ttl

    async def create(self, principal: Principal) -> SessionPublic:
        now = self._clock.now()
        row = AgentSession(
            id=str(uuid.uuid4()),
            key_id=principal.key_id,
            created_at=now,
            last_active_at=now,
            expires_at=now + self._ttl,
        )
        async with self._db.session() as session:
            session.add(row)
            await session.commit()
        return self._public(row, [])

    async def _owned(self, db_session: AsyncSession, principal: Principal, session_id: str) -> AgentSession:
        row = await db_session.get(AgentSession, session_id)
        if row is None or row.key_id != principal.key_id or _aware(row.expires_at) <= self._clock.now():
            raise SessionNotFound(session_id)
        return row

    async def get(self, principal: Principal, session_id: str) -> SessionPublic:
        """The session and its history; reading it counts as use and extends its life."""
        async with self._db.session() as session:
            row = await self._owned(session, principal, session_id)
            self._touch(row)
            messages = (
                await session.scalars(
                    select(SessionMessage)
                    .where(SessionMessage.session_id == session_id)
                    .order_by(SessionMessage.id)
                )
            ).all()
            await session.commit()
            return self._public(row, list(messages))

    async def history(self, principal: Principal, session_id: str, limit: int = 40) -> list[Message]:
        """The last ``limit`` messages as model input (a long conversation would otherwise grow every
        query's tokens without bound); 404 unless the session is the caller's and unexpired. Core
        statements on one connection: this is on every query's path."""
        async with self._db.engine.connect() as connection:
            owned = await connection.execute(
                select(AgentSession.id).where(*self._live_and_owned(principal, session_id))
            )
            if owned.first() is None:
                raise SessionNotFound(session_id)
            rows = (
                await connection.execute(
                    select(SessionMessage.role, SessionMessage.content)
                    .where(SessionMessage.session_id == session_id)
                    .order_by(SessionMessage.id.desc())
                    .limit(limit)
                )
            ).all()
        return [Message(role, content) for role, content in reversed(rows)]

    async def append(self, principal: Principal, session_id: str, messages: list[tuple[str, str]]) -> None:
        """Add messages and extend the session's life, in one transaction; 404 if it expired meanwhile."""
        now = self._clock.now()
        async with self._db.engine.begin() as connection:
            touched = await connection.execute(
                update(AgentSession)
                .where(*self._live_and_owned(principal, session_id))
                .values(last_active_at=now, expires_at=now + self._ttl)
            )
            if not getattr(touched, "rowcount", 0):
                raise SessionNotFound(session_id)
            await connection.execute(
                insert(SessionMessage),
                [{"session_id": session_id, "role": r, "content": c, "created_at": now} for r, c in messages],
            )

    def _live_and_owned(self, principal: Principal, session_id: str) -> tuple[ColumnElement[bool], ...]:
        return (
            AgentSession.id == session_id,
            AgentSession.key_id == principal.key_id,
            AgentSession.expires_at > self._clock.now(),
        )

    async def delete(self, principal: Principal, session_id: str) -> None:
        async with self._db.session() as session:
            row = await self._owned(session, principal, session_id)
            await session.delete(row)
            await session.commit()

    async def count_active(self) -> int:
        async with self._db.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(AgentSession)
                .where(AgentSession.expires_at > self._clock.now())
            )
        return int(count or 0)

    async def purge_expired(self) -> int:
        async with self._db.session() as session:
            result = await session.execute(
                delete(AgentSession).where(AgentSession.expires_at <= self._clock.now())
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    def _touch(self, row: AgentSession) -> None:
        now = self._clock.now()
        row.last_active_at = now
        row.expires_at = now + self._ttl

    @staticmethod
    def _public(row: AgentSession, messages: list[SessionMessage]) -> SessionPublic:
        return SessionPublic(
            id=row.id,
            created_at=_aware(row.created_at),
            last_active_at=_aware(row.last_active_at),
            expires_at=_aware(row.expires_at),
            messages=[
                MessagePublic(role=m.role, content=m.content, created_at=_aware(m.created_at))
                for m in messages
            ],
        )
