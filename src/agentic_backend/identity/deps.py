"""FastAPI dependencies of the identity feature: the caller, checked for one permission."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend import state
from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal
from agentic_backend.identity.service import KeyService


async def get_key_service(request: Request) -> KeyService:
    return state.of(request.app).keys


KeyServiceDep = Annotated[KeyService, Depends(get_key_service)]
KeysAdmin = Annotated[Principal, Depends(RequirePermission(Permission.KEYS_ADMIN))]
SessionsReader = Annotated[Principal, Depends(RequirePermission(Permission.SESSIONS_READ))]
SessionsWriter = Annotated[Principal, Depends(RequirePermission(Permission.SESSIONS_WRITE))]
