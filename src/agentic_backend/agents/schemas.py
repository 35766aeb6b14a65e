"""Pydantic models of the agents API."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=20_000, description="What to ask the agent.")
    session_id: uuid.UUID | None = Field(default=None, description="A session to continue (gives history).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query must not be blank")
        return value


class StepPublic(BaseModel):
    kind: str
    name: str
    detail: str
    input_tokens: int
    output_tokens: int


class TokenCounts(BaseModel):
    input: int
    output: int


class QueryResponse(BaseModel):
    request_id: str
    agent_type: str
    provider: str
    model: str
    answer: str
    stop_reason: str = Field(description="answer, step_limit or budget; 'cache' for a cached answer.")
    steps: list[StepPublic]
    tokens: TokenCounts
    cost_dollars: float
    cached: bool
    session_id: str | None


class AgentTypePublic(BaseModel):
    name: str
    description: str
    provider: str
    model: str
    tools: list[str]
    max_steps: int
    timeout_seconds: float
