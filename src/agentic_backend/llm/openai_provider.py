"""``openai``: the official SDK against any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama,
a LiteLLM proxy). The SDK retries 429 and 5xx with exponential backoff (``max_retries``); what still fails
is classified into ``llm.base``'s error kinds.

Two choices for speed, both the SDK's own (a model call is most of the CPU the service spends on a query):
its aiohttp transport (``DefaultAioHttpClient``) rather than httpx's, and ``client.post`` with the
chat-completion types (the SDK's documented way to make a request of its own) rather than
``chat.completions.create``, whose transformation of the parameters walks every message against the
SDK's typed dictionaries, which a body built here as plain JSON does not need. Per call, against the
same local server (bench/overhead.py): 5.7 ms of CPU through ``create`` on httpx, 2.9-3.2 ms this way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk

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
from agentic_backend.llm.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
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


def _connection_failed(exc: BaseException) -> bool:
    """Whether under the SDK's error lies a connection that failed without timing out (refused, reset,
    closed mid-answer). The openai SDK's aiohttp transport maps every aiohttp ClientConnectionError that is
    not a ClientConnectorError's exact kind to httpx.ConnectTimeout, so a provider that is down reads as
    "timed out" unless its cause is looked at."""
    cause = exc.__cause__
    while cause is not None:
        kinds = {kind.__name__ for kind in type(cause).__mro__}
        if "ClientConnectionError" in kinds and "ServerTimeoutError" not in kinds:
            return True
        cause = cause.__cause__
    return False


def classify(exc: Exception, provider: str) -> ProviderError:
    """Map an SDK exception (openai or anthropic: they share the shape) to our error kinds."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if _connection_failed(exc):
        return ProviderServerError(f"{provider}: the provider failed (no connection)")
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


def sampling(options: CallOptions) -> dict[str, Any]:
    """The caller's options as chat-completions parameters: only those it set, so a model that refuses
    one (a reasoning model and ``temperature``) is not sent it unasked."""
    asked: dict[str, Any] = {
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed,
        "stop": list(options.stop) or None,
        "frequency_penalty": options.frequency_penalty,
        "presence_penalty": options.presence_penalty,
        "response_format": options.response_format,
        "reasoning_effort": options.reasoning_effort,
    }
    chosen = options.tool_choice
    if chosen is not None and chosen not in ("none", "auto", "required"):
        asked["tool_choice"] = {"type": "function", "function": {"name": chosen}}
    else:
        asked["tool_choice"] = chosen
    asked["parallel_tool_calls"] = options.parallel_tool_calls
    return {name: value for name, value in asked.items() if value is not None}


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """A chat completion's usage as Completion's fields: cached input and reasoning from the details."""
    if not usage:
        return {}
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": usage.get("prompt_tokens") or 0,
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_read_tokens": prompt.get("cached_tokens") or 0,
        "reasoning_tokens": completion.get("reasoning_tokens") or 0,
    }


def _completion(data: dict[str, Any]) -> Completion:
    """A chat completion's JSON as a Completion. Read as plain JSON, not through the SDK's ChatCompletion:
    building that model was a fifth of the SDK's CPU per call (bench/overhead.py, cProfile of the service
    at one connection), for fields read once here."""
    choice = data["choices"][0]
    message = choice["message"]
    calls = tuple(
        ToolCall(c["id"], c["function"]["name"], json.loads(c["function"].get("arguments") or "{}"))
        for c in message.get("tool_calls") or []
        if c.get("type") == "function"
    )
    return Completion(
        message.get("content"),
        calls,
        model=data.get("model"),
        truncated=choice.get("finish_reason") == "length",
        **_usage(data.get("usage")),
    )


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
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
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
        kwargs: dict[str, Any] = sampling(options)
        if not tools:  # OpenAI refuses a tool_choice without tools
            kwargs.pop("tool_choice", None)
            kwargs.pop("parallel_tool_calls", None)
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        kwargs.update(model=model, messages=[_to_openai(m) for m in messages], max_tokens=max_tokens)
        if on_text is not None:
            return await self._stream(kwargs, timeout, on_text)
        try:
            raw = await self._client.post(
                "/chat/completions", body=kwargs, cast_to=bytes, options={"timeout": timeout}
            )
        except openai.OpenAIError as exc:
            raise classify(exc, self.name) from None
        try:
            return _completion(json.loads(raw))
        except (IndexError, KeyError, AttributeError, ValueError, TypeError) as exc:
            raise ProviderBadResponse(f"openai: unusable response ({type(exc).__name__})") from None

    async def _stream(self, kwargs: dict[str, Any], timeout: float, on_text: TextSink) -> Completion:
        """The same call streamed: text deltas to ``on_text``, tool calls assembled from their pieces,
        the usage from the last chunk (``stream_options.include_usage``)."""
        text: list[str] = []
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
        usage: dict[str, int] = {}
        answered_by: str | None = None
        truncated = False
        try:
            stream = await self._client.post(
                "/chat/completions",
                body={**kwargs, "stream": True, "stream_options": {"include_usage": True}},
                cast_to=ChatCompletionChunk,
                options={"timeout": timeout},
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            async with stream:
                async for chunk in stream:
                    answered_by = chunk.model or answered_by
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage.model_dump())
                    for choice in chunk.choices:
                        truncated = truncated or choice.finish_reason == "length"
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                            await on_text(delta.content)
                        for call in delta.tool_calls or []:
                            parts = calls.setdefault(call.index, ["", "", ""])
                            parts[0] = call.id or parts[0]
                            if call.function is not None:
                                parts[1] = call.function.name or parts[1]
                                parts[2] += call.function.arguments or ""
        except (openai.OpenAIError, ValueError) as exc:
            raise classify(exc, self.name) from None
        try:
            tool_calls = tuple(
                ToolCall(call_id, name, json.loads(arguments or "{}"))
                for call_id, name, arguments in (calls[i] for i in sorted(calls))
            )
        except (ValueError, TypeError) as exc:
            raise ProviderBadResponse(f"openai: unusable tool call ({type(exc).__name__})") from None
        return Completion("".join(text) or None, tool_calls, model=answered_by, truncated=truncated, **usage)

    async def close(self) -> None:
        await self._client.close()
