"""``anthropic``: the official SDK (Messages API with tool use). Retries and error kinds as for openai."""

from __future__ import annotations

from typing import Any, cast

import anthropic

from agentic_backend.llm.base import (
    DEFAULT_MAX_TOKENS,
    NO_OPTIONS,
    CallOptions,
    Completion,
    Message,
    TextSink,
    ToolCall,
    ToolSpec,
)
from agentic_backend.llm.errors import ProviderBadResponse
from agentic_backend.llm.openai_provider import classify


def _to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n".join(m.content for m in messages if m.role == "system")
    converted: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            if converted and converted[-1]["role"] == "user" and isinstance(converted[-1]["content"], list):
                converted[-1]["content"].append(block)  # results of one turn's calls go in one user message
            else:
                converted.append({"role": "user", "content": [block]})
        elif m.role == "assistant" and m.tool_calls:
            content: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            content += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls
            ]
            converted.append({"role": "assistant", "content": content})
        else:
            converted.append({"role": m.role, "content": m.content})
    return system, converted


# OpenAI's reasoning efforts as the Messages API's (output_config.effort).
_EFFORT = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
}


def sampling(options: CallOptions) -> dict[str, Any]:
    """The caller's options as Messages API parameters; a response format becomes structured output
    (``output_config.format``, a JSON schema)."""
    kwargs: dict[str, Any] = {}
    if options.temperature is not None:
        kwargs["temperature"] = options.temperature
    if options.top_p is not None:
        kwargs["top_p"] = options.top_p
    if options.stop:
        kwargs["stop_sequences"] = list(options.stop)
    config: dict[str, Any] = {}
    schema = options.json_schema()
    if schema is not None:
        config["format"] = {"type": "json_schema", "schema": schema}
    if options.reasoning_effort is not None:
        config["effort"] = _EFFORT.get(options.reasoning_effort, "medium")
    if config:
        kwargs["output_config"] = config
    choice = _TOOL_CHOICE.get(options.tool_choice or "", {"type": "tool", "name": options.tool_choice})
    if options.tool_choice is not None:
        kwargs["tool_choice"] = dict(choice)
    if options.parallel_tool_calls is False:
        kwargs.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True
    return kwargs


# OpenAI's tool_choice values as the Messages API's.
_TOOL_CHOICE: dict[str, dict[str, Any]] = {
    "none": {"type": "none"},
    "auto": {"type": "auto"},
    "required": {"type": "any"},
}


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float, max_retries: int) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

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
    ) -> Completion:
        system, converted = _to_anthropic(messages)
        kwargs: dict[str, Any] = sampling(options)
        if not tools:
            kwargs.pop("tool_choice", None)
        if tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        if system:
            kwargs["system"] = system
        try:
            if on_text is None:
                response = await self._client.messages.create(
                    model=model,
                    max_tokens=max_tokens,
                    messages=cast(Any, converted),
                    timeout=timeout,
                    **kwargs,
                )
            else:  # the SDK's stream helper assembles the message (text and tool_use blocks) as it goes
                async with self._client.messages.stream(
                    model=model,
                    max_tokens=max_tokens,
                    messages=cast(Any, converted),
                    timeout=timeout,
                    **kwargs,
                ) as stream:
                    async for piece in stream.text_stream:
                        await on_text(piece)
                    response = await stream.get_final_message()
        except (anthropic.AnthropicError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise classify(exc, self.name) from None
        try:
            text = "".join(b.text for b in response.content if b.type == "text") or None
            calls = tuple(
                ToolCall(b.id, b.name, dict(cast(dict[str, Any], b.input)))
                for b in response.content
                if b.type == "tool_use"
            )
            usage = response.usage
            # Anthropic counts cached input apart from input_tokens: the whole input is their sum.
            read = usage.cache_read_input_tokens or 0
            write = usage.cache_creation_input_tokens or 0
            return Completion(
                text,
                calls,
                usage.input_tokens + read + write,
                usage.output_tokens,
                response.model,
                truncated=response.stop_reason == "max_tokens",
                cache_read_tokens=read,
                cache_write_tokens=write,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(f"anthropic: unusable response ({type(exc).__name__})") from None

    async def close(self) -> None:
        await self._client.close()
