"""``openai``: the official SDK against any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama,
a LiteLLM proxy). The SDK retries 429 and 5xx with exponential backoff (``max_retries``); what still fails
is classified into ``llm.base``'s error kinds."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import openai

from agentic_backend.llm.base import (
    DEFAULT_MAX_TOKENS,
    Completion,
    Message,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ToolCall,
    ToolSpec,
)


def _retry_after(exc: Exception) -> float | None:
    """The provider's Retry-After (or retry-after-ms) header, in seconds, if it sent a number."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        try:
            value = float(raw) * scale if raw is not None else None
        except ValueError:  # an HTTP date: rare from LLM providers; the default applies
            value = None
        if value is not None and math.isfinite(value) and value >= 0:
            return value
    return None


def classify(exc: Exception, provider: str) -> ProviderError:
    """Map an SDK exception (openai or anthropic: they share the shape) to our error kinds."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if "Timeout" in name:
        return ProviderTimeout(f"{provider}: the provider did not answer in time")
    if status == 429 or "RateLimit" in name:
        return ProviderRateLimited(
            f"{provider}: the provider is rate limiting us; retry later", retry_after=_retry_after(exc)
        )
    if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name:
        return ProviderAuthError(f"{provider}: the provider refused our credentials")
    if "Connection" in name or (isinstance(status, int) and status >= 500):
        return ProviderServerError(f"{provider}: the provider failed ({status or 'no connection'})")
    return ProviderBadResponse(f"{provider}: the provider refused or garbled the request ({status or name})")


def openai_tool_calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """Tool calls in OpenAI's wire format (arguments as a JSON string)."""
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in calls
    ]


def _to_openai(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = openai_tool_calls(message.tool_calls)
    return data


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float, max_retries: int) -> None:
        self._client = openai.AsyncOpenAI(
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
    ) -> Completion:
        kwargs: dict[str, Any] = {}
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        try:
            response = await self._client.chat.completions.create(
                model=model,
                messages=cast(Any, [_to_openai(m) for m in messages]),
                timeout=timeout,
                max_tokens=max_tokens,
                **kwargs,
            )
        except (openai.OpenAIError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise classify(exc, self.name) from None
        try:
            choice = response.choices[0].message
            calls = tuple(
                ToolCall(c.id, c.function.name, json.loads(c.function.arguments or "{}"))
                for c in (choice.tool_calls or [])
                if c.type == "function"
            )
            usage = response.usage
            return Completion(
                choice.content,
                calls,
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )
        except (IndexError, AttributeError, ValueError, TypeError) as exc:
            raise ProviderBadResponse(f"openai: unusable response ({type(exc).__name__})") from None

    async def close(self) -> None:
        await self._client.close()
