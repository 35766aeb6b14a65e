"""Pydantic models of the sessions API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class MessagePublic(BaseModel):
    role: str
    content: str
    created_at: datetime


class SessionPublic(BaseModel):
    id: str
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    messages: list[MessagePublic]
