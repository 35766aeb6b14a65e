"""FastAPI dependencies of the identity feature: the caller, checked for one permission."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal

KeysAdmin = Annotated[Principal, Depends(RequirePermission(Permission.KEYS_ADMIN))]
SessionsReader = Annotated[Principal, Depends(RequirePermission(Permission.SESSIONS_READ))]
SessionsWriter = Annotated[Principal, Depends(RequirePermission(Permission.SESSIONS_WRITE))]
