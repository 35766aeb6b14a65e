"""``/api/v1/agents``: the agent types, and queries to them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from agentic_backend.agents.deps import AgentServiceDep, AgentsQuerier
from agentic_backend.agents.schemas import AgentTypePublic, QueryRequest, QueryResponse

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    402: {"description": "The key's monthly budget is spent."},
    404: {"description": "Unknown agent type, or a session that is not the caller's."},
    429: {"description": "The key's rate limit, or the provider's (Retry-After says when to retry)."},
    502: {"description": "The provider failed or answered something unusable."},
    503: {"description": "The agent's provider is not configured."},
    504: {"description": "The provider or the query's deadline timed out."},
}


@router.get("")
async def list_agent_types(_: AgentsQuerier, agents: AgentServiceDep) -> list[AgentTypePublic]:
    return [
        AgentTypePublic(
            name=a.name,
            description=a.description,
            provider=a.provider,
            model=a.model,
            tools=list(a.tools),
            max_steps=a.max_steps,
            timeout_seconds=a.timeout_seconds,
        )
        for a in sorted(agents.agents.values(), key=lambda a: a.name)
    ]


@router.post("/{agent_type}/query", responses=_ERRORS)
async def query_agent(
    agent_type: str, body: QueryRequest, principal: AgentsQuerier, agents: AgentServiceDep
) -> QueryResponse:
    """Run the agent: model calls and tool calls until it answers, within its step limit and deadline
    and the key's budget. Stateless queries (no session) may be answered from the cache at no cost."""
    return await agents.query(principal, agent_type, body)
