"""The OpenAI adapter's direct call keeps the official SDK's retry policy: which answers are retried, how
often, after how long, and what the caller gets at the end. Against a real HTTP server that answers a
script of statuses and headers, one per request, and counts them."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from agentic_backend.llm.base import Message
from agentic_backend.llm.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from agentic_backend.llm.openai_provider import OpenAIProvider, _RetryPolicy

pytestmark = pytest.mark.integration

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}
FAST = {"retry-after-ms": "1"}  # so that a retried script runs in milliseconds


class Script:
    """Answers requests in order from ``steps`` (status, headers); the last one repeats."""

    def __init__(self, steps: list[tuple[int, dict[str, str]]]) -> None:
        self.steps = steps
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {"headers": dict(request.headers), "body": await request.json(), "at": time.monotonic()}
        )
        status, headers = self.steps[min(len(self.seen), len(self.steps)) - 1]
        if status == 0:  # no answer: the connection is dropped
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if status == 200:
            return web.json_response(ANSWER, headers=headers)
        return web.json_response(
            {"error": {"message": "scripted", "type": "x"}}, status=status, headers=headers
        )


@asynccontextmanager
async def provider_for(script: Script, *, retries: int) -> AsyncIterator[OpenAIProvider]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", script.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    provider = OpenAIProvider(
        api_key="sk-retries-test", base_url=f"http://127.0.0.1:{port}/v1", timeout=5, max_retries=retries
    )
    try:
        yield provider
    finally:
        await provider.close()
        await runner.cleanup()


async def ask(provider: OpenAIProvider) -> Any:
    return await provider.complete("gpt-4o-mini", [Message("user", "hi")], [], timeout=5, max_tokens=16)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, ProviderRateLimited),
        (408, ProviderBadResponse),
        (409, ProviderBadResponse),
        (500, ProviderServerError),
        (503, ProviderServerError),
        (529, ProviderServerError),
    ],
)
async def test_retryable_statuses_are_retried_up_to_max_retries(
    status: int, error: type[ProviderError]
) -> None:
    script = Script([(status, FAST)])
    async with provider_for(script, retries=2) as provider:
        with pytest.raises(error):
            await ask(provider)
    assert len(script.seen) == 3  # the call and two retries


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ProviderBadResponse),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderBadResponse),
    ],
)
async def test_other_statuses_are_not_retried(status: int, error: type[ProviderError]) -> None:
    script = Script([(status, FAST)])
    async with provider_for(script, retries=3) as provider:
        with pytest.raises(error):
            await ask(provider)
    assert len(script.seen) == 1


async def test_a_retry_that_succeeds_returns_the_answer_and_the_request_is_the_same() -> None:
    script = Script([(500, FAST), (429, FAST), (200, {})])
    async with provider_for(script, retries=2) as provider:
        answer = await ask(provider)
    assert answer.text == "hello"
    assert (answer.input_tokens, answer.output_tokens, answer.model) == (7, 1, "gpt-4o-mini-2024-07-18")
    assert len(script.seen) == 3
    first = script.seen[0]
    assert all(seen["body"] == first["body"] for seen in script.seen)
    assert first["body"] == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    }
    assert first["headers"]["Authorization"] == "Bearer sk-retries-test"
    assert first["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("told", "status", "calls"),
    [("false", 500, 1), ("false", 429, 1), ("true", 400, 3), ("true", 401, 3)],
)
async def test_x_should_retry_overrides_the_status(told: str, status: int, calls: int) -> None:
    script = Script([(status, {**FAST, "x-should-retry": told})])
    async with provider_for(script, retries=2) as provider:
        with pytest.raises(ProviderError):
            await ask(provider)
    assert len(script.seen) == calls


async def test_retry_after_is_waited_for_and_a_long_one_is_not_retried() -> None:
    script = Script([(429, {"retry-after": "0.3"}), (200, {})])
    async with provider_for(script, retries=1) as provider:
        await ask(provider)
    assert script.seen[1]["at"] - script.seen[0]["at"] >= 0.28

    script = Script([(429, {"retry-after": "120"})])  # over a minute: back to the caller at once
    async with provider_for(script, retries=3) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderRateLimited) as caught:
            await ask(provider)
    assert len(script.seen) == 1
    assert time.monotonic() - started < 2
    assert caught.value.retry_after == 120  # the provider's own figure reaches the client


async def test_dropped_connections_and_timeouts_are_retried_then_classified() -> None:
    script = Script([(0, {})])
    async with provider_for(script, retries=1) as provider:
        with pytest.raises(ProviderServerError, match="no connection"):
            await ask(provider)
    assert len(script.seen) == 2

    with socket.socket() as unused:  # a port nobody listens on: refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    provider = OpenAIProvider(
        api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1", timeout=5, max_retries=0
    )
    try:
        with pytest.raises(ProviderServerError, match="no connection"):
            await ask(provider)
    finally:
        await provider.close()

    class Slow(Script):
        async def handle(self, request: web.Request) -> web.StreamResponse:
            self.seen.append({"at": time.monotonic()})
            await asyncio.sleep(5)
            return web.json_response(ANSWER)

    slow = Slow([])
    async with provider_for(slow, retries=0) as provider:
        with pytest.raises(ProviderTimeout):
            await provider.complete("gpt-4o-mini", [Message("user", "hi")], [], timeout=0.3)
    assert len(slow.seen) == 1


@pytest.mark.parametrize("body", [b"{not json", b'{"choices": []}', b"[]"])
async def test_an_unusable_200_is_a_bad_response_and_not_retried(body: bytes) -> None:
    calls: list[int] = []

    async def garbled(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(body=body, content_type="application/json")

    script = Script([])
    script.handle = garbled  # type: ignore[method-assign]
    async with provider_for(script, retries=2) as provider:
        with pytest.raises(ProviderBadResponse):
            await ask(provider)
    assert len(calls) == 1


def test_the_backoff_doubles_from_half_a_second_to_eight_with_jitter() -> None:
    random.seed(2026)
    policy = _RetryPolicy(max_retries=10)
    for retried, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert 0.75 * full <= policy.delay(retried, None) <= full
    assert policy.delay(0, {"retry-after-ms": "1500"}) == 1.5  # the provider's figure, not the backoff
    assert policy.delay(0, {"retry-after": "0"}) <= 0.5  # zero: the backoff applies


async def test_the_environment_s_proxy_carries_the_call_and_no_proxy_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY and NO_PROXY, as the SDK honours them: the provider's host does not resolve, so only the
    proxy (the scripted server, which answers the request it forwards) can answer."""
    script = Script([(200, {})])
    async with provider_for(script, retries=0) as direct:
        proxy = direct._url.removesuffix("/v1/chat/completions")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        through = OpenAIProvider(
            api_key="sk-x", base_url="http://provider.invalid/v1", timeout=5, max_retries=0
        )
        try:
            assert (await ask(through)).text == "hello"
        finally:
            await through.close()
        assert script.seen[-1]["headers"]["Host"] == "provider.invalid"

        monkeypatch.setenv("NO_PROXY", "provider.invalid")
        bypassed = OpenAIProvider(
            api_key="sk-x", base_url="http://provider.invalid/v1", timeout=5, max_retries=0
        )
        try:
            with pytest.raises(ProviderServerError, match="no connection"):
                await ask(bypassed)
        finally:
            await bypassed.close()
    assert len(script.seen) == 1
