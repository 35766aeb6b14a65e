"""Agent types: three built in, more (or changed ones) from a JSON file named by ``AGENTIC_AGENTS_FILE``.

The file holds a list of objects with the fields of ``AgentType``; an entry with a built-in name replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentic_backend.agents.tools import TOOLS
from agentic_backend.llm.base import DEFAULT_MAX_TOKENS


class AgentType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    description: str = ""
    provider: str = Field(default="sim", pattern=r"^(sim|openai|anthropic)$")
    model: str = Field(min_length=1, max_length=100)
    system_prompt: str = Field(default="You are a helpful assistant.", max_length=10_000)
    tools: tuple[str, ...] = ()
    max_steps: int = Field(default=4, ge=1, le=20)
    # Asked of the provider on every call; also the output a call's budget reservation assumes.
    max_output_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=200_000)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; available: {sorted(TOOLS)}")
        return tools


BUILTIN: tuple[AgentType, ...] = (
    AgentType(
        name="assistant",
        description="General questions, answered in one step.",
        model="gpt-4o-mini",
        system_prompt="You are a concise assistant for backend engineers.",
        max_steps=1,
    ),
    AgentType(
        name="researcher",
        description="Answers from the local documentation, with a search tool.",
        model="claude-3-5-haiku-latest",
        system_prompt="Search the documentation before answering; cite what you found.",
        tools=("search_documents",),
        max_steps=4,
    ),
    AgentType(
        name="calculator",
        description="Arithmetic with a safe calculator tool.",
        model="gpt-4o-mini",
        system_prompt="Use the calculate tool for any arithmetic; never compute in your head.",
        tools=("calculate",),
        max_steps=3,
    ),
)


def load_agent_types(path: Path | None) -> dict[str, AgentType]:
    agents = {agent.name: agent for agent in BUILTIN}
    if path is None:
        return agents
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, list):
            raise ValueError("the file must hold a JSON list of agent types")
        for entry in entries:
            agent = AgentType.model_validate(entry)
            agents[agent.name] = agent
    except (OSError, ValueError, ValidationError) as exc:
        raise ValueError(f"AGENTIC_AGENTS_FILE {path}: {exc}") from None
    return agents
