"""What the two OpenAI faces (chat completions, responses) share: the number types they check, the
function a caller describes, the agent type a ``model`` names, and the checks of the caller's tools and
of what an agent type's provider does not take."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

from agentic_backend.agents.errors import ModelNotFound
from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.schemas import QueryResponse, TokenCounts
from agentic_backend.agents.service import AgentService
from agentic_backend.agents.tools import TOOLS
from agentic_backend.core.errors import BadRequest
from agentic_backend.llm.base import ANTHROPIC_UNSUPPORTED, ToolSpec


def _integral(value: object) -> object:
    """An integer as JSON may write it (16 or 16.0); a string or a boolean is not one."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field: what JSON Schema's "integer" takes (16.0 too), and nothing pydantic's lax mode would
# coerce ("16", true).
INTEGRAL = BeforeValidator(_integral)  # after a field's bounds: Annotated[StrictInt, Field(ge=1), INTEGRAL]
Integer = Annotated[StrictInt, INTEGRAL]
# Float bounds (not ints) make a range error OpenAI's "decimal_..." code (core/errors.py).
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Temperature = Annotated[Number, Field(ge=0.0, le=2.0)]
TopP = Annotated[Number, Field(ge=0.0, le=1.0)]

ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No agent type of this name (model), or no such stored previous response."},
    429: {"description": "The key's rate or its monthly budget (code insufficient_quota) is spent."},
    502: {"description": "The provider failed or answered something unusable."},
    503: {"description": "The agent's provider is not configured."},
    504: {"description": "The provider or the query's deadline timed out."},
}


class FunctionFields(BaseModel):
    """A function the caller describes: offered to the model beside the agent type's own tools."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: StrictStr | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description or "", self.parameters or {"type": "object"})


def agent_for(agents: AgentService, model: str) -> AgentType:
    agent = agents.agents.get(model)
    if agent is None:
        raise ModelNotFound(
            f"The model '{model}' does not exist; GET /v1/models lists the agent types.", param="model"
        )
    return agent


def refuse_for_provider(provider: str, asked: dict[str, object], temperature: float | None) -> None:
    """Refuse what the agent type's provider does not take: Anthropic takes no seed or penalties, and a
    temperature only up to 1."""
    if provider != "anthropic":
        return
    for name in ANTHROPIC_UNSUPPORTED:
        if asked.get(name) is not None:
            raise BadRequest(
                f"Unsupported parameter: '{name}' is not taken by this agent type's provider, anthropic.",
                param=name,
            )
    if temperature is not None and temperature > 1:
        raise BadRequest(
            "Invalid 'temperature': this agent type's provider, anthropic, takes 0 to 1.", param="temperature"
        )


def caller_tools(
    functions: list[FunctionFields], agent: AgentType, where: str, chosen: str | None
) -> tuple[ToolSpec, ...]:
    """The caller's tools, refused when one takes the name of the agent type's own or another's, or when
    ``tool_choice`` (``chosen``: a name, ``required``, ...) asks for one that is not there. ``where``
    formats a tool's index as its name's ``param`` (``tools[{}].function.name``)."""
    tools = tuple(function.spec() for function in functions)
    names = [tool.name for tool in tools]
    for n, name in enumerate(names):
        if name in agent.tools or name in TOOLS:
            raise BadRequest(
                f"the tool name '{name}' is the agent type's own tool; give yours another name.",
                param=where.format(n),
            )
        if names.index(name) != n:
            raise BadRequest(f"two tools are named '{name}'.", param=where.format(n))
    if chosen == "required" and not tools:
        raise BadRequest("tool_choice 'required' needs tools.", param="tool_choice")
    if chosen not in (None, "none", "auto", "required") and chosen not in names:
        raise BadRequest("tool_choice names a tool that is not in tools.", param="tool_choice")
    return tools


def reported_tokens(answer: QueryResponse) -> tuple[TokenCounts, int]:
    """The tokens both faces report, and how many of the input were cached: a cached answer reports the
    tokens it holds, all of its input as cached (it cost nothing, as X-Agentic-Cost-Dollars says);
    otherwise what the provider read from its prompt cache."""
    if answer.cached_tokens is not None:
        return answer.cached_tokens, answer.cached_tokens.input
    return answer.tokens, answer.tokens.cache_read
