"""Sessions: create, read, delete, append history, and count the unexpired ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Database, Write
from agentic_backend.core.ids import uuid7
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Message, ToolCall
from agentic_backend.sessions.errors import ResponseNotFound, SessionNotFound
from agentic_backend.sessions.models import AgentSession, SessionMessage, StoredResponse
from agentic_backend.sessions.schemas import MessagePublic, SessionPublic


def aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_LIVE_AND_OWNED = (
    AgentSession.id == bindparam("sid"),
    AgentSession.key_id == bindparam("key"),
    AgentSession.expires_at > bindparam("now"),
)
_TOUCH = (
    update(AgentSession)
    .where(*_LIVE_AND_OWNED)
    .values(last_active_at=bindparam("now"), expires_at=bindparam("expires"))
)
_APPEND = insert(SessionMessage).from_select(
    ["session_id", "role", "content", "created_at"],
    select(bindparam("sid"), bindparam("role"), bindparam("content"), bindparam("now")).where(
        exists().where(*_LIVE_AND_OWNED)
    ),
)

# The session's last messages, oldest first; one row of NULLs for a live session without messages, none for
# a session that is not the caller's or has expired.
_RECENT = (
    select(SessionMessage.id, SessionMessage.role, SessionMessage.content)
    .where(SessionMessage.session_id == bindparam("sid"))
    .order_by(SessionMessage.id.desc())
    .limit(bindparam("limit"))
    .subquery()
)
_HISTORY = (
    select(_RECENT.c.role, _RECENT.c.content)
    .select_from(AgentSession)
    .outerjoin(_RECENT, true())
    .where(*_LIVE_AND_OWNED)
    .order_by(_RECENT.c.id)
)


_COUNT_ACTIVE = (
    select(func.count()).select_from(AgentSession).where(AgentSession.expires_at > bindparam("now"))
)


class SessionService:
    # The active_sessions gauge counts the database's unexpired sessions: a scan of all of them, whose cost
    # grows with their number. Counted on every scrape and summary, it made the soak slower by the minute
    # (bench/workers.py --soak 900, PostgreSQL: the stores' CPU a request 0.83 ms in the first 3 minutes,
    # 1.04 ms in the fourth, p99 67 to 95 ms; 12 summaries a second each counting 10,000+ sessions), and any
    # client could make the database count as often as it asked for /metrics. So a worker counts again only
    # once a second, or less often where counting is slow: never more than 1 % of the time (a count of 40 ms
    # waits 4 s). Between counts it adds the sessions it created and deleted itself; other workers' and
    # replicas' show at its next count, and expiries too.
    RECOUNT_AFTER = 1.0  # seconds
    RECOUNT_SHARE = 0.01

    def __init__(self, database: Database, clock: Clock, idle_ttl: timedelta) -> None:
        self._db = database
        self._clock = clock
        self._ttl = idle_ttl
        self._counted: int | None = None  # at the last count, plus this worker's creations and deletions
        self._counted_at = 0.0  # on the clock's monotonic seconds
        self._recount_after = self.RECOUNT_AFTER

    async def create(self, principal: Principal) -> SessionPublic:
        now = self._clock.now()
        row = {
            "id": str(uuid7()),
            "key_id": principal.key_id,
            "created_at": now,
            "last_active_at": now,
            "expires_at": now + self._ttl,
        }
        # Through the group commit, like the ledger's rows: committed before the answer, in one transaction
        # with other requests' writes (through an ORM session the request took 1.00-1.05 ms of CPU, now 0.85).
        await self._db.group.write((_CREATE, row))
        if self._counted is not None:
            self._counted += 1
        return SessionPublic(
            id=row["id"], created_at=now, last_active_at=now, expires_at=row["expires_at"], messages=[]
        )

    async def _owned(self, db_session: AsyncSession, principal: Principal, session_id: str) -> AgentSession:
        row = await db_session.get(AgentSession, session_id)
        if row is None or row.key_id != principal.key_id or aware(row.expires_at) <= self._clock.now():
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
        query's tokens without bound); 404 unless the session is the caller's and unexpired. One statement
        (the session left-joined to its last messages): this is on every query's path."""
        async with self._db.autocommit.connect() as connection:
            params = {"sid": session_id, "key": principal.key_id, "now": self._clock.now(), "limit": limit}
            rows = (await connection.execute(_HISTORY, params)).all()
        if not rows:
            raise SessionNotFound(session_id)
        return [Message(role, content) for role, content in rows if role is not None]

    def append_writes(
        self, principal: Principal, session_id: str, messages: list[tuple[str, str]]
    ) -> list[Write]:
        """The statements that add ``messages`` and extend the session's life, for the database's group
        commit. Both are conditional on the session being the caller's and unexpired, so a session deleted
        or expired meanwhile takes nothing (and fails no one else's writes in the same batch)."""
        now = self._clock.now()
        owner = {"sid": session_id, "key": principal.key_id, "now": now}
        writes: list[Write] = [(_TOUCH, {**owner, "expires": now + self._ttl})]
        writes += [(_APPEND, {**owner, "role": role, "content": content}) for role, content in messages]
        return writes

    async def append(self, principal: Principal, session_id: str, messages: list[tuple[str, str]]) -> None:
        """Add messages and extend the session's life (nothing if it expired or is not the caller's)."""
        await self._db.group.write(*self.append_writes(principal, session_id, messages))

    async def delete(self, principal: Principal, session_id: str) -> None:
        async with self._db.session() as session:
            row = await self._owned(session, principal, session_id)
            await session.delete(row)
            await session.commit()
        if self._counted is not None:
            self._counted = max(0, self._counted - 1)

    async def active(self) -> int:
        """The unexpired sessions, for the active_sessions gauge: counted in the database at most every
        ``RECOUNT_AFTER`` seconds (longer if counting takes more than ``RECOUNT_SHARE`` of it), in between
        the last count with this worker's own creations and deletions."""
        now = self._clock.monotonic()
        if self._counted is None or now - self._counted_at >= self._recount_after:
            self._counted_at = now  # the callers meanwhile take the previous count: one count at a time
            count = await self.count_active()
            took = self._clock.monotonic() - now
            self._recount_after = max(self.RECOUNT_AFTER, took / self.RECOUNT_SHARE)
            self._counted = count
        return self._counted

    async def count_active(self) -> int:
        # Core on one connection, not an ORM session: this runs on every scrape.
        async with self._db.autocommit.connect() as connection:
            count = await connection.scalar(_COUNT_ACTIVE, {"now": self._clock.now()})
        return int(count or 0)

    async def purge_expired(self) -> int:
        """Delete expired sessions and stored responses; how many sessions went."""
        now = self._clock.now()
        async with self._db.session() as session:
            result = await session.execute(delete(AgentSession).where(AgentSession.expires_at <= now))
            await session.execute(delete(StoredResponse).where(StoredResponse.expires_at <= now))
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    async def keep_response(self, principal: Principal, response_id: str, messages: list[Message]) -> None:
        """Store a Responses API answer's conversation for ``previous_response_id``."""
        row = {
            "id": response_id,
            "key_id": principal.key_id,
            "messages": [_message_dict(m) for m in messages],
            "expires_at": self._clock.now() + self._ttl,
        }
        await self._db.group.write((_KEEP_RESPONSE, row))

    async def recall_response(self, principal: Principal, response_id: str) -> list[Message]:
        """The conversation a stored response ended, as it stood; ResponseNotFound if it is not the key's."""
        async with self._db.session() as session:
            row = await session.get(StoredResponse, response_id)
        if row is None or row.key_id != principal.key_id or aware(row.expires_at) <= self._clock.now():
            raise ResponseNotFound(response_id)
        return [_message_of(m) for m in row.messages]

    def _touch(self, row: AgentSession) -> None:
        now = self._clock.now()
        row.last_active_at = now
        row.expires_at = now + self._ttl

    @staticmethod
    def _public(row: AgentSession, messages: list[SessionMessage]) -> SessionPublic:
        return SessionPublic(
            id=row.id,
            created_at=aware(row.created_at),
            last_active_at=aware(row.last_active_at),
            expires_at=aware(row.expires_at),
            messages=[
                MessagePublic(role=m.role, content=m.content, created_at=aware(m.created_at))
                for m in messages
            ],
        )


_KEEP_RESPONSE = insert(StoredResponse)
_CREATE = insert(AgentSession)


def _message_dict(message: Message) -> dict[str, Any]:
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": calls,
        "tool_call_id": message.tool_call_id,
    }


def _message_of(data: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in data.get("tool_calls", ()))
    return Message(data["role"], data["content"], calls, data.get("tool_call_id"))
