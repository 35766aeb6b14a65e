"""The provider interface and its error classes.

A provider turns a conversation (and the tools an agent may call) into one ``Completion``: either a final
text or tool calls, and the tokens the call used. Errors are classified into a small fixed set, which is
both a metric label and the HTTP answer:

    ProviderError
    ├── ProviderTimeout      (kind "timeout",      HTTP 504)
    ├── ProviderRateLimited  (kind "rate_limit",   HTTP 429)
    ├── ProviderAuthError    (kind "auth",         HTTP 502: our credentials, not the caller's)
    ├── ProviderServerError  (kind "server",       HTTP 502)
    └── ProviderBadResponse  (kind "bad_response", HTTP 502)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn. ``tool_calls`` on assistant turns, ``tool_call_id`` on tool results."""

    role: str  # system, user, assistant, tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True, slots=True)
class Completion:
    text: str | None
    tool_calls: tuple[ToolCall, ...] = field(default=())
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None  # the model that answered, as the provider names it (if it says)
    truncated: bool = False  # the answer stopped at max_tokens (OpenAI's finish_reason "length")
    # Parts of input_tokens read from and written to the provider's prompt cache (priced apart), and of
    # output_tokens spent reasoning, as the provider reports them.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What a caller asks of each model call beyond the conversation, passed to the provider as given
    (the ranges are checked where the request comes in). ``response_format`` is OpenAI's:
    ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema", ...}}``."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    # Which tool the model must call: "none", "auto", "required", or a tool's name; None leaves it to the
    # model. ``parallel_tool_calls`` False: at most one call a turn.
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must follow: the caller's, ``{"type": "object"}`` for a JSON object,
        None for text."""
        asked = self.response_format or {}
        if asked.get("type") == "json_schema":
            schema = asked.get("json_schema", {}).get("schema")
            return schema if isinstance(schema, dict) else {"type": "object"}
        return {"type": "object"} if asked.get("type") == "json_object" else None


NO_OPTIONS = CallOptions()

# The options Anthropic's Messages API does not take: the OpenAI faces refuse them for an agent type on
# that provider. Here, not in anthropic_provider: importing the anthropic SDK takes two seconds.
ANTHROPIC_UNSUPPORTED = ("seed", "frequency_penalty", "presence_penalty")


def estimate_tokens(text: str) -> int:
    """About 4 characters a token, as tokenizers of English text average: for what no provider counted
    (a streamed call cancelled before its usage arrived)."""
    return max(1, (len(text) + 3) // 4) if text else 0


# The output tokens a model call may produce unless the agent type says otherwise (``max_output_tokens``):
# also the bound a call's budget reservation assumes (billing/budget.py).
DEFAULT_MAX_TOKENS = 1024


# Where a streamed call's text goes as the model produces it (each piece once, in order).
TextSink = Callable[[str], Awaitable[None]]


class Provider(Protocol):
    """``max_tokens`` caps the call's output tokens: providers are asked for no more. With ``on_text`` the
    call is streamed: each piece of answer text is handed to it as it arrives, and the ``Completion``
    returned at the end is the same as without it."""

    name: str

    async def complete(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        timeout: float,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        on_text: TextSink | None = None,
        options: CallOptions = NO_OPTIONS,
    ) -> Completion: ...

    async def close(self) -> None: ...
