"""``/api/v1/sessions``: agent conversations, each visible only to the key that made it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from agentic_backend import state
from agentic_backend.identity.deps import SessionsReader, SessionsWriter
from agentic_backend.sessions.schemas import SessionPublic

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such unexpired session for this key."}
}


@router.post("", status_code=201)
async def create_session(principal: SessionsWriter, request: Request) -> SessionPublic:
    """Start a conversation; pass its id as ``session_id`` to agent queries to give them history."""
    return await state.of(request.app).sessions.create(principal)


@router.get("/{session_id}", responses=_NOT_FOUND)
async def get_session(session_id: uuid.UUID, principal: SessionsReader, request: Request) -> SessionPublic:
    return await state.of(request.app).sessions.get(principal, str(session_id))


@router.delete("/{session_id}", status_code=204, responses=_NOT_FOUND)
async def delete_session(session_id: uuid.UUID, principal: SessionsWriter, request: Request) -> Response:
    await state.of(request.app).sessions.delete(principal, str(session_id))
    return Response(status_code=204)
