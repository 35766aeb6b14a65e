"""FastAPI dependencies of the sessions feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend import state
from agentic_backend.sessions.service import SessionService


async def get_session_service(request: Request) -> SessionService:
    return state.of(request.app).sessions


SessionServiceDep = Annotated[SessionService, Depends(get_session_service)]
