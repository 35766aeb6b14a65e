"""FastAPI dependencies of the agents feature."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from agentic_backend.core.bodies import json_body
from agentic_backend.core.security import RequirePermission
from agentic_backend.identity.permissions import Permission
from agentic_backend.identity.schemas import Principal

M = TypeVar("M", bound=BaseModel)
_authorize_query = RequirePermission(Permission.AGENTS_QUERY)
AgentsQuerier = Annotated[Principal, Depends(_authorize_query)]


async def query_call(request: Request, model: type[M]) -> tuple[Principal, M]:
    """A query route's caller, allowed to query agents, then its body as ``model`` (core/bodies.py): read
    in the route, not as FastAPI parameters, and only once the key is known, so that a caller without
    one learns nothing of what its body would have got."""
    principal: Principal = await _authorize_query(request)
    return principal, await json_body(request, model)
