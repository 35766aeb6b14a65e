"""Pydantic models of the sessions API."""

from __future__ import annotations

from pydantic import BaseModel

from agentic_backend.core.types import UtcDateTime


class MessagePublic(BaseModel):
    role: str
    content: str
    created_at: UtcDateTime


class SessionPublic(BaseModel):
    id: str
    created_at: UtcDateTime
    last_active_at: UtcDateTime
    expires_at: UtcDateTime
    messages: list[MessagePublic]
