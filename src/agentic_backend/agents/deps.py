"""FastAPI dependencies of the agents feature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agentic_backend import state
from agentic_backend.agents.service import AgentService
from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal


async def get_agent_service(request: Request) -> AgentService:
    return state.of(request.app).agents


AgentServiceDep = Annotated[AgentService, Depends(get_agent_service)]
AgentsQuerier = Annotated[Principal, Depends(RequirePermission(Permission.AGENTS_QUERY))]
