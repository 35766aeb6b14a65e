"""FastAPI dependencies of the agents feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal

# Called by the query routes themselves, before they read their body (core/bodies.py); the dependency for
# the others.
authorize_query = RequirePermission(Permission.AGENTS_QUERY)
AgentsQuerier = Annotated[Principal, Depends(authorize_query)]
