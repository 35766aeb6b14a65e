"""``openai``: any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, a LiteLLM proxy). 429, 408,
409 and 5xx answers, timeouts and failed connections are retried with exponential backoff (``max_retries``);
what still fails is classified into ``llm.base``'s error kinds.

A model call is most of the CPU the service spends on a query, so the unstreamed call, the agent path's
usual one, is one POST of a body built here as JSON, read back as JSON: no SDK request pipeline, no
response model, on the service's own HTTP/1.1 client (llm/http1.py), which costs about half of aiohttp's
CPU a call (aiohttp still carries the call through a proxy). Its retry policy is the SDK's own, written out
(``_RetryPolicy``): the same statuses, ``x-should-retry``, ``retry-after-ms`` and ``Retry-After`` honoured
up to a minute, else 0.5 s doubling to 8 s less up to 25 % of jitter. Per call, against the same local
server (bench/overhead.py, CPU of the service at one connection): 5.7 ms through the SDK's ``create`` on
httpx, 2.9-3.2 ms through its ``client.post`` on its aiohttp transport, 1.8-1.9 ms as one aiohttp POST.
Streaming, where the model's pace and not our CPU sets the time, keeps the official SDK: its SSE decoding
and typed chunks.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
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
from agentic_backend.llm.http1 import Answer, AnswerTooLarge, Http1Client


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The provider's retry-after-ms or Retry-After header, in seconds, if it sent a number."""
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


def _no_connection(provider: str) -> ProviderError:
    return ProviderServerError(f"{provider}: the provider failed (no connection)")


def _timed_out(provider: str) -> ProviderError:
    return ProviderTimeout(f"{provider}: the provider did not answer in time")


def from_status(status: int, headers: Mapping[str, str] | None, provider: str) -> ProviderError:
    """An HTTP error status from a provider as our error kind."""
    if status == 429:
        return ProviderRateLimited(
            f"{provider}: the provider is rate limiting us; retry later", retry_after=_retry_after(headers)
        )
    if status in (401, 403):
        return ProviderAuthError(f"{provider}: the provider refused our credentials")
    if status >= 500:
        return ProviderServerError(f"{provider}: the provider failed ({status})")
    return ProviderBadResponse(f"{provider}: the provider refused or garbled the request ({status})")


def classify(exc: Exception, provider: str) -> ProviderError:
    """Map an SDK exception (openai or anthropic: they share the shape) to our error kinds."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if _connection_failed(exc):
        return _no_connection(provider)
    if "Timeout" in name:
        return _timed_out(provider)
    if isinstance(status, int):
        return from_status(status, getattr(getattr(exc, "response", None), "headers", None), provider)
    if "RateLimit" in name:
        return ProviderRateLimited(f"{provider}: the provider is rate limiting us; retry later")
    if "Authentication" in name or "PermissionDenied" in name:
        return ProviderAuthError(f"{provider}: the provider refused our credentials")
    if "Connection" in name:
        return _no_connection(provider)
    return ProviderBadResponse(f"{provider}: the provider refused or garbled the request ({name})")


def _env_proxy(url: str) -> str | None:
    """The proxy for ``url`` that HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY name (httpx, so the SDK,
    honours them), read once. aiohttp's own ``trust_env`` would look for a netrc file in a thread on every
    request."""
    parts = urlsplit(url)
    if parts.hostname is None or proxy_bypass(parts.hostname):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class _RetryPolicy:
    """The openai SDK's retry policy (``openai._base_client``: ``_should_retry`` and
    ``_calculate_retry_timeout``), for the calls made without it."""

    INITIAL_DELAY = 0.5
    MAX_DELAY = 8.0
    MAX_RETRY_AFTER = 60.0  # a longer Retry-After is not waited for: the error goes back at once

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries

    def should_retry(self, status: int, headers: Mapping[str, str]) -> bool:
        retry_after = _retry_after(headers)
        if retry_after is not None and retry_after > self.MAX_RETRY_AFTER:
            return False
        told = headers.get("x-should-retry")
        if told in ("true", "false"):
            return told == "true"
        return status in (408, 409, 429) or status >= 500

    def delay(self, retried: int, headers: Mapping[str, str] | None) -> float:
        retry_after = _retry_after(headers)
        if retry_after is not None and 0 < retry_after <= self.MAX_RETRY_AFTER:
            return retry_after
        backoff = min(self.INITIAL_DELAY * 2.0 ** min(retried, 1000), self.MAX_DELAY)
        return backoff * (1 - 0.25 * random.random())  # jitter, not a secret


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
        # The SDK resolves the base URL (OPENAI_BASE_URL) and the headers (OPENAI_ORG_ID, OPENAI_PROJECT_ID)
        # for the direct call too.
        self._url = str(self._client.base_url).rstrip("/") + "/chat/completions"
        headers = {**self._client.default_headers, **self._client.auth_headers}
        self._headers = {name: value for name, value in headers.items() if isinstance(value, str)}
        self._proxy = _env_proxy(self._url)
        self._retry = _RetryPolicy(max_retries)
        # The direct call: this service's own HTTP/1.1 client (llm/http1.py says why; the SDK's limit of
        # 1,000 connections), or aiohttp where a proxy carries the call, opened in the loop at its first call.
        self._direct = Http1Client(self._url, self._headers, limit=1000) if self._proxy is None else None
        self._session: aiohttp.ClientSession | None = None

    async def _send(self, body: bytes, timeout: float) -> Answer:
        """One try: the answer, whatever its status. A failed connection is an OSError."""
        if self._direct is not None:
            return await self._direct.post(body, timeout)
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=4)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        try:
            async with self._session.post(
                self._url, data=body, timeout=aiohttp.ClientTimeout(total=timeout), proxy=self._proxy
            ) as response:
                payload = await response.read()
                return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, payload)
        except aiohttp.ClientError as exc:  # refused, reset, closed mid-answer (its timeouts: TimeoutError)
            raise ConnectionError(str(exc)) from exc

    async def _post(self, body: bytes, timeout: float) -> bytes:
        """POST a chat completion; its answer's body, after the retries the policy allows."""
        retried = 0
        while True:
            headers: Mapping[str, str] | None = None
            try:
                answer = await self._send(body, timeout)
                if answer.status < 300:
                    return answer.body
                headers = answer.headers
                error = from_status(answer.status, headers, self.name)
                retry = self._retry.should_retry(answer.status, headers)
            except TimeoutError:
                error, retry = _timed_out(self.name), True
            except OSError:  # refused, reset, closed mid-answer, not HTTP
                error, retry = _no_connection(self.name), True
            except AnswerTooLarge as exc:
                raise ProviderBadResponse(f"{self.name}: unusable response ({exc})") from None
            if not retry or retried >= self._retry.max_retries:
                raise error
            await asyncio.sleep(self._retry.delay(retried, headers))
            retried += 1

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
        raw = await self._post(json.dumps(kwargs).encode(), timeout)
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
        if self._direct is not None:
            await self._direct.close()
        if self._session is not None:
            await self._session.close()
        await self._client.close()
