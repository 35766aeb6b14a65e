"""``/api/v1/agents``: the agent types, and queries to them."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request, Response

from agentic_backend import state
from agentic_backend.agents.deps import AgentsQuerier, query_call
from agentic_backend.agents.runtime import QueryOptions
from agentic_backend.agents.schemas import AgentTypePublic, QueryRequest, QueryResponse
from agentic_backend.agents.streaming import MEDIA_TYPE, SSE_EVENT_SCHEMA, QueryStream, sse_response
from agentic_backend.core.bodies import body_schema
from agentic_backend.core.errors import BadRequest
from agentic_backend.core.logs import note_usage
from agentic_backend.core.routes import RequestRoute
from agentic_backend.monitoring.middleware import ARRIVED

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], route_class=RequestRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    402: {"description": "The key's monthly budget is spent."},
    404: {"description": "Unknown agent type, or a session that is not the caller's."},
    429: {"description": "The key's rate limit, or the provider's (Retry-After says when to retry)."},
    502: {"description": "The provider failed or answered something unusable."},
    503: {"description": "The agent's provider is not configured."},
    504: {"description": "The provider or the query's deadline timed out."},
}


@router.get("")
async def list_agent_types(_: AgentsQuerier, request: Request) -> list[AgentTypePublic]:
    agents = state.of(request.app).agents.agents
    return [AgentTypePublic.model_validate(a) for a in sorted(agents.values(), key=lambda a: a.name)]


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer; as Server-Sent Events when streamed ('stream': true or 'Accept: "
        "text/event-stream'): event start, delta (answer text), step, then done (the QueryResponse) or "
        "error.",
        "content": {MEDIA_TYPE: {"schema": SSE_EVENT_SCHEMA}},
    }
}


CACHE_HEADER = "X-Agentic-Cache"
END_USER_HEADER = "X-Agentic-End-User"
COST_HEADER = "X-Agentic-Cost-Dollars"
OVERHEAD_HEADER = "X-Agentic-Overhead-Ms"


def answered(request: Request, response: QueryResponse) -> dict[str, str]:
    """An answered query, on every route: its usage for the request's log line (core/logs.py), the time
    the service added beyond its model calls and tools (from the request's arrival, HttpMetricsMiddleware)
    in ``agent_overhead_seconds``, and the headers that say it: cached or not, the cost, the overhead."""
    tokens = response.tokens
    note_usage(
        request.state,
        request_id=response.request_id,
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cost=response.cost_dollars,
    )
    arrived = request.scope.get(ARRIVED)
    overhead = perf_counter() - arrived - response.upstream_seconds if arrived is not None else 0.0
    state.of(request.app).agents.recorder.overhead(response.agent_type, overhead)
    return {
        CACHE_HEADER: "hit" if response.cached else "miss",
        COST_HEADER: repr(response.cost_dollars),
        OVERHEAD_HEADER: f"{max(0.0, overhead) * 1000:.3f}",
    }


def wants_stream(request: Request, body: QueryRequest) -> bool:
    return body.stream or MEDIA_TYPE in request.headers.get("accept", "")


@router.post(
    "/{agent_type}/query",
    openapi_extra=body_schema(QueryRequest),
    responses={**_STREAMED, **_ERRORS},
    response_model=QueryResponse,
)
async def query_agent(agent_type: str, request: Request) -> Response:
    """Run the agent: model calls and tool calls until it answers, within its step limit and deadline
    and the key's budget. Stateless queries (no session) may be answered from the cache at no cost."""
    principal, body = await query_call(request, QueryRequest)
    services = state.of(request.app)  # not dependencies: state.py
    agents, settings = services.agents, services.settings
    end_user = body.user or request.headers.get(END_USER_HEADER)
    if end_user is not None and len(end_user) > 256:
        raise BadRequest(f"{END_USER_HEADER} is longer than 256 characters.")
    options = QueryOptions(end_user=end_user, tags=body.metadata)
    if not wants_stream(request, body):
        response = await agents.query(principal, agent_type, body, options=options)
        return Response(
            response.model_dump_json(), media_type="application/json", headers=answered(request, response)
        )
    stream = QueryStream(
        agents,
        principal,
        agent_type,
        body,
        keepalive_seconds=settings.stream_keepalive_seconds,
        options=options,
        on_done=lambda response: answered(request, response),
    )
    first = await stream.first()  # a refusal raises here: a plain JSON error with its status
    return sse_response(stream.frames(first))
