"""Pydantic models of the agents API."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from agentic_backend.agents.runtime import StepKind, StopReason

# A character that is not whitespace, spelt out: `\S` differs between Python (which counts \x1c-\x1f and
# \x85 as space) and the ECMA-262 regexes of JSON Schema (\ufeff), and the published pattern must say
# exactly what the service refuses. The set is Python's str.isspace().
_NOT_BLANK = re.compile(
    r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)


Tags = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=1,
        max_length=20_000,
        description="What to ask the agent (not blank).",
        json_schema_extra={"pattern": _NOT_BLANK.pattern},
    )
    session_id: uuid.UUID | None = Field(default=None, description="A session to continue (gives history).")
    stream: StrictBool = Field(
        default=False,
        description="Answer as Server-Sent Events (as does 'Accept: text/event-stream'): start, delta, "
        "step, and done or error.",
    )
    user: str | None = Field(
        default=None,
        max_length=256,
        description="The end user the query is for (or the X-Agentic-End-User header): kept in the "
        "ledger, to filter and group usage by (GET /api/v1/usage/groups?by=end_user). Never a metric label.",
    )
    metadata: Tags | None = Field(
        default=None,
        description="Tags of the query (at most 16, keys up to 64 characters, values up to 512): kept in "
        "the ledger, to filter and group usage by (?tag=key:value, ?by=tag:key). Never a metric label.",
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not _NOT_BLANK.search(value):
            raise ValueError("the query must not be blank")
        return value


class StepPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from a runtime Step

    kind: StepKind
    name: str
    detail: str
    input_tokens: int
    output_tokens: int


class ToolCallPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the model's ToolCall

    id: str
    name: str
    arguments: dict[str, Any]


class TokenCounts(BaseModel):
    input: int
    output: int
    cache_read: int = Field(default=0, description="Of the input: read from the provider's prompt cache.")
    cache_write: int = Field(default=0, description="Of the input: written to the provider's prompt cache.")
    reasoning: int = Field(default=0, description="Of the output: spent reasoning.")


class QueryResponse(BaseModel):
    request_id: str
    agent_type: str
    provider: str
    model: str
    answer: str
    stop_reason: StopReason = Field(
        description="answer; step_limit or budget (it ran out); length (cut at the caller's max_tokens); "
        "cache (a cached answer); tool_calls (the model called a caller's tool: see tool_calls)."
    )
    steps: list[StepPublic]
    tokens: TokenCounts = Field(
        description="What this query used of the provider (none, for a cached answer)."
    )
    tool_calls: list[ToolCallPublic] = Field(
        default_factory=list,
        description="With stop_reason tool_calls: the caller's tools the model called (the OpenAI face).",
    )
    upstream_seconds: float = Field(
        default=0.0, description="Time in model calls and tools: what the service waited for, not added."
    )
    cached_tokens: TokenCounts | None = Field(
        default=None, description="For a cached answer: the tokens it holds, as its first run used them."
    )
    cost_dollars: float
    cached: bool
    session_id: str | None


class AgentTypePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from an AgentType, without its prompt

    name: str
    description: str
    provider: str
    model: str
    tools: list[str]
    max_steps: int
    timeout_seconds: float
