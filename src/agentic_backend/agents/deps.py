"""FastAPI dependencies of the agents feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal

AgentsQuerier = Annotated[Principal, Depends(RequirePermission(Permission.AGENTS_QUERY))]
