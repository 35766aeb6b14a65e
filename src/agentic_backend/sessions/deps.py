"""FastAPI dependencies of the sessions feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend.sessions.service import SessionService


async def get_session_service(request: Request) -> SessionService:
    service: SessionService = request.app.state.sessions
    return service


SessionServiceDep = Annotated[SessionService, Depends(get_session_service)]
