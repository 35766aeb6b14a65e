"""The agent loop: call the model, run the tools it asks for, feed the results back, until it answers, the
step limit or deadline is reached, or the caller's budget says stop. Every model call is opened and closed
with the caller's ``CallAccount`` (which reserves budget before it and settles what it cost after it,
whether it returned, failed or was cancelled), so a query that fails half-way still pays for what it used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.tools import TOOLS, ToolError
from agentic_backend.llm.base import Completion, Message, Provider, ProviderTimeout, ToolSpec


@dataclass(slots=True)
class Step:
    kind: str  # "model" or "tool"
    name: str  # the model, or the tool
    detail: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class RunResult:
    answer: str
    stop_reason: str  # answer, step_limit, budget
    steps: list[Step] = field(default_factory=list)
    tool_calls: int = 0


class CallAccount(Protocol):
    async def open(self, messages: list[Message], tools: list[ToolSpec]) -> bool:
        """Before a model call: whether it may run (False: the budget is spent, the loop stops)."""
        ...

    async def close(self, completion: Completion | None, seconds: float) -> None:
        """After it: what it used (None if it failed or was cancelled)."""
        ...


ToolHook = Callable[[str, bool], None]


async def run_agent(
    agent: AgentType,
    provider: Provider,
    query: str,
    history: list[Message],
    *,
    deadline: float,
    account: CallAccount,
    on_tool: ToolHook,
) -> RunResult:
    """``deadline`` is a ``time.monotonic()`` value."""
    messages = [Message("system", agent.system_prompt), *history, Message("user", query)]
    tools = [TOOLS[name].spec for name in agent.tools]
    result = RunResult(answer="", stop_reason="step_limit")
    for _ in range(agent.max_steps):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout(f"the query's deadline of {agent.timeout_seconds:g} s passed")
        if not await account.open(messages, tools):
            result.stop_reason = "budget"
            break
        started = time.monotonic()
        try:
            completion = await provider.complete(
                agent.model, messages, tools, timeout=remaining, max_tokens=agent.max_output_tokens
            )
        except BaseException:
            with anyio.CancelScope(shield=True):  # a cancelled query still releases its reservation
                await account.close(None, time.monotonic() - started)
            raise
        await account.close(completion, time.monotonic() - started)
        result.steps.append(
            Step(
                "model",
                agent.model,
                "tool calls" if completion.tool_calls else "answer",
                completion.input_tokens,
                completion.output_tokens,
            )
        )
        if not completion.tool_calls:
            result.answer = completion.text or ""
            result.stop_reason = "answer"
            return result
        messages.append(Message("assistant", completion.text or "", completion.tool_calls))
        for call in completion.tool_calls:
            tool = TOOLS.get(call.name) if call.name in agent.tools else None
            try:
                if tool is None:
                    raise ToolError(f"no tool {call.name!r} for this agent")
                output = await tool.run(call.arguments)
                ok = True
            except ToolError as exc:
                output, ok = f"error: {exc}", False
            on_tool(call.name if tool is not None else "unknown", ok)
            result.tool_calls += 1
            result.steps.append(
                Step("tool", call.name, json.dumps(call.arguments)[:200] + " -> " + output[:200])
            )
            messages.append(Message("tool", output, tool_call_id=call.id))
    result.answer = (
        result.answer or "I could not finish within the limits of this query; here is what I have so far."
    )
    return result
