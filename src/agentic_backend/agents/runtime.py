"""The agent loop: call the model, run the tools it asks for, feed the results back, until it answers, the
step limit or deadline is reached, or the caller's budget says stop. Every model call is opened and closed
with the caller's ``CallAccount`` (which reserves budget before it and settles what it cost after it,
whether it returned, failed or was cancelled), so a query that fails half-way still pays for what it used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import anyio
from opentelemetry.trace import NoOpTracer, StatusCode, Tracer

from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.tools import TOOLS, ToolError
from agentic_backend.llm.base import (
    NO_OPTIONS,
    CallOptions,
    Completion,
    Message,
    Provider,
    ToolCall,
    ToolSpec,
    estimate_tokens,
)
from agentic_backend.llm.errors import ProviderTimeout

StepKind = Literal["model", "tool"]  # a model call, or a tool call
# Why a query ended: answered; out of steps; out of budget; answered from the cache; its answer cut at the
# caller's max_tokens.
# tool_calls: the model called a caller's tool; the caller runs it and continues the conversation.
StopReason = Literal["answer", "step_limit", "budget", "cache", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """What the caller asks of a query beyond its text: a cap on each model call's output tokens (below
    the agent type's own), the options passed to every model call, and whom to attribute it to."""

    max_tokens: int | None = None
    call: CallOptions = NO_OPTIONS
    end_user: str | None = None  # who the caller says it asks for, and its tags: the ledger keeps both
    tags: dict[str, str] | None = None
    # The caller's own tools, offered beside the agent type's: a call of one ends the run with it.
    tools: tuple[ToolSpec, ...] = ()
    # The conversation ends in the caller's tool results: the run resumes it, with no new user turn.
    resume: bool = False

    def cap(self, agent: AgentType) -> int:
        """The most output tokens one model call of ``agent`` may produce (and its budget reserves)."""
        if self.max_tokens is None:
            return agent.max_output_tokens
        return min(agent.max_output_tokens, self.max_tokens)

    def variant(self) -> str:
        """A stable text of the options, for the cache key: a different ask is a different answer."""
        asked = (self.max_tokens, self.call, self.tools)
        return "" if asked == (None, NO_OPTIONS, ()) else repr(asked)


ASKED_NOTHING = QueryOptions()


@dataclass(slots=True)
class Step:
    kind: StepKind
    name: str  # the model, or the tool
    detail: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class RunResult:
    answer: str
    stop_reason: StopReason
    steps: list[Step] = field(default_factory=list)
    tool_calls: int = 0
    caller_calls: tuple[ToolCall, ...] = ()  # with stop_reason tool_calls: the caller's tools to run


class CallAccount(Protocol):
    async def open(self, messages: list[Message], tools: list[ToolSpec], max_tokens: int) -> bool:
        """Before a model call that may write ``max_tokens``: whether it may run (False: the budget is
        spent, the loop stops)."""
        ...

    async def close(
        self,
        completion: Completion | None,
        seconds: float,
        first_token: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """After it: what it used (None if it failed), how long it took, when streamed after how long its
        first token came, and what ended it if it did not return."""
        ...


class RunEvents(Protocol):
    """Where a streamed query's progress goes: answer text as the model produces it, each step done."""

    async def text(self, piece: str) -> None: ...

    async def step(self, step: Step) -> None: ...


class _Stream:
    """One streamed model call: its text so far, and when its first piece came."""

    def __init__(self, events: RunEvents, started: float) -> None:
        self._events = events
        self._started = started
        self.pieces: list[str] = []
        self.first_token: float | None = None

    async def on_text(self, piece: str) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic() - self._started
        self.pieces.append(piece)
        await self._events.text(piece)

    def partial(self, messages: list[Message]) -> Completion:
        """What a call cancelled mid-stream consumed, as far as we can tell: the provider counted its input
        but never said so, and the output is what it sent."""
        text = "".join(self.pieces)
        sent = sum(estimate_tokens(m.content) + 4 for m in messages)
        return Completion(text or None, (), sent, estimate_tokens(text))


ToolHook = Callable[[str, bool, float], None]  # the tool as counted, whether it worked, its seconds


_NO_TRACER = NoOpTracer()


def _first_token(stream: _Stream | None) -> float | None:
    return stream.first_token if stream is not None else None


async def run_agent(
    agent: AgentType,
    provider: Provider,
    query: str,
    history: list[Message],
    *,
    deadline: float,
    account: CallAccount,
    on_tool: ToolHook,
    events: RunEvents | None = None,
    tracer: Tracer | None = None,
    options: QueryOptions = ASKED_NOTHING,
) -> RunResult:
    """``deadline`` is a ``time.monotonic()`` value. With ``events`` the model calls are streamed. The
    caller's tools (``options.tools``) are offered beside the agent type's; when the model calls one, the
    run ends with those calls (``stop_reason`` tool_calls) for the caller to run: the agent's own calls of
    that turn are left out, and the model makes them again when the caller's results come back."""
    cap = options.cap(agent)
    turn = [] if options.resume else [Message("user", query)]
    messages = [Message("system", agent.system_prompt), *history, *turn]
    tools = [TOOLS[name].spec for name in agent.tools] + list(options.tools)
    callers = {tool.name for tool in options.tools}
    ask = options.call
    result = RunResult(answer="", stop_reason="step_limit")
    for _ in range(agent.max_steps):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout(f"the query's deadline of {agent.timeout_seconds:g} s passed")
        if not await account.open(messages, tools, cap):
            result.stop_reason = "budget"
            break
        call = _ModelCall(agent, provider, cap, remaining, ask)
        completion = await call.run(messages, tools, account, events)
        if ask.tool_choice not in (None, "none", "auto"):  # a required or named tool: the first call's
            ask = replace(ask, tool_choice="auto")
        kind = "tool calls" if completion.tool_calls else "answer"
        step = Step("model", agent.model, kind, completion.input_tokens, completion.output_tokens)
        result.steps.append(step)
        if events is not None:
            await events.step(step)
        if not completion.tool_calls:
            result.answer = completion.text or ""
            result.stop_reason = "length" if completion.truncated else "answer"
            return result
        for_caller = tuple(c for c in completion.tool_calls if c.name in callers)
        if for_caller:
            result.answer, result.stop_reason, result.caller_calls = (
                completion.text or "",
                "tool_calls",
                for_caller,
            )
            return result
        messages.append(Message("assistant", completion.text or "", completion.tool_calls))
        for tool_call in completion.tool_calls:
            began = time.monotonic()
            name, output, ok = await _run_tool(agent, tool_call, tracer or _NO_TRACER)
            on_tool(name, ok, time.monotonic() - began)
            result.tool_calls += 1
            detail = json.dumps(tool_call.arguments)[:200] + " -> " + output[:200]
            step = Step("tool", tool_call.name, detail)
            result.steps.append(step)
            if events is not None:
                await events.step(step)
            messages.append(Message("tool", output, tool_call_id=tool_call.id))
    result.answer = (
        result.answer or "I could not finish within the limits of this query; here is what I have so far."
    )
    return result


@dataclass(frozen=True, slots=True)
class _ModelCall:
    agent: AgentType
    provider: Provider
    cap: int
    remaining: float
    options: CallOptions

    async def run(
        self, messages: list[Message], tools: list[ToolSpec], account: CallAccount, events: RunEvents | None
    ) -> Completion:
        """One model call, streamed with ``events``, closed on the account whatever happens: a call
        cancelled mid-stream (the client went away) is charged what it consumed, a failed one nothing
        (providers do not bill errors)."""
        started = time.monotonic()
        stream = _Stream(events, started) if events is not None else None
        try:
            completion = await self.provider.complete(
                self.agent.model,
                messages,
                tools,
                timeout=self.remaining,
                max_tokens=self.cap,
                on_text=stream.on_text if stream is not None else None,
                options=self.options,
            )
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            partial = stream.partial(messages) if stream is not None and cancelled else None
            with anyio.CancelScope(shield=True):  # a cancelled query still settles its reservation
                await account.close(partial, time.monotonic() - started, _first_token(stream), exc)
            raise
        await account.close(completion, time.monotonic() - started, _first_token(stream))
        return completion


async def _run_tool(agent: AgentType, call: ToolCall, tracer: Tracer) -> tuple[str, str, bool]:
    """Run one tool the model called, in its span: the tool's name as counted (``unknown`` for one the
    agent type does not have, so span names and labels stay few), its output, and whether it worked."""
    tool = TOOLS.get(call.name) if call.name in agent.tools else None
    name = call.name if tool is not None else "unknown"
    with tracer.start_as_current_span(
        f"execute_tool {name}",
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call.id,
        },
    ) as span:
        try:
            if tool is None:
                raise ToolError(f"no tool {call.name!r} for this agent")
            return name, await tool.run(call.arguments), True
        except ToolError as exc:
            span.set_attribute("error.type", "tool_error")
            span.set_status(StatusCode.ERROR, "tool_error")
            return name, f"error: {exc}", False
