"""The OpenAI-compatible face through the official ``openai`` SDK (sync, async, streaming) over real HTTP:
the agents answer as OpenAI models, with the same keys, limits, budget, ledger and metrics as the native
route, and errors arrive as the SDK's own exception classes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import value
from tests.integration.harness import Service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(tmp_path_factory.mktemp("openai-face"), env={"AGENTIC_SIM_TOKENS_PER_SECOND": "2000"})
    yield running
    running.stop()


def client(service: Service, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=key or service.admin_key, max_retries=0)


def user_key(service: Service, **limits: object) -> tuple[int, str]:
    created = httpx.post(
        f"{service.url}/api/v1/keys",
        json={"name": f"sdk-{len(limits)}-{id(limits)}", "role": "user", **limits},
        headers=service.headers,
        timeout=10,
    ).json()
    return int(created["id"]), str(created["key"])


def test_the_models_are_the_agent_types(service: Service) -> None:
    with client(service) as sdk:
        models = sorted(model.id for model in sdk.models.list())
        assert models == ["assistant", "calculator", "researcher"]
        assert sdk.models.retrieve("calculator").owned_by == "agentic-backend"
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("gpt-9")


def test_a_chat_completion_runs_the_agent_with_its_history(service: Service) -> None:
    _, key = user_key(service)
    with client(service, key) as sdk:
        completion = sdk.chat.completions.create(
            model="calculator", messages=[{"role": "user", "content": "what is 12*(3+4)?"}]
        )
        assert completion.object == "chat.completion"
        assert completion.model == "calculator"
        assert "84" in (completion.choices[0].message.content or "")
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert completion.usage.prompt_tokens > 0
        assert completion.usage.completion_tokens > 0
        first = completion.usage.prompt_tokens
        with_history = sdk.chat.completions.create(
            model="calculator",
            messages=[
                {"role": "system", "content": "Answer tersely."},
                {"role": "user", "content": "what is 12*(3+4)?"},
                {"role": "assistant", "content": completion.choices[0].message.content},
                {"role": "user", "content": [{"type": "text", "text": "and 6*7?"}]},
            ],
            temperature=0.2,  # accepted, and left to the agent type
        )
        assert "42" in (with_history.choices[0].message.content or "")
        assert with_history.usage is not None
        assert with_history.usage.prompt_tokens > first  # the history went to the model
    usage = httpx.get(f"{service.url}/api/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    assert usage["totals"]["queries"] == 2  # the same ledger as the native route
    assert usage["totals"]["cost_dollars"] > 0


def test_streaming_with_usage_through_the_sync_and_async_clients(service: Service) -> None:
    _, key = user_key(service)
    messages = [{"role": "user", "content": "tell me about the dashboard"}]
    with client(service, key) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="assistant",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1

    async def streamed_async() -> str:
        async with openai.AsyncOpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0) as async_sdk:
            plain = await async_sdk.chat.completions.create(model="assistant", messages=messages)  # type: ignore[arg-type]
            assert plain.choices[0].message.content == text  # the cache answers the same
            stream = await async_sdk.chat.completions.create(
                model="researcher",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return "".join(pieces)

    assert asyncio.run(streamed_async())


def test_errors_arrive_as_the_sdks_exceptions(service: Service) -> None:
    key_id, key = user_key(service, rpm_limit=2)
    with client(service, key) as sdk:
        with pytest.raises(openai.NotFoundError) as unknown:
            sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
        assert unknown.value.code == "model_not_found"
        assert unknown.value.param == "model"
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.chat.completions.create(
                model="assistant", messages=[{"role": "assistant", "content": "the last is not the user's"}]
            )
        assert bad.value.type == "invalid_request_error"
        assert "last message" in bad.value.message
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="assistant", messages=[], n=1)
        with pytest.raises(openai.BadRequestError) as two:
            sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}], n=2)
        assert two.value.param == "n"
        with pytest.raises(openai.BadRequestError) as hot:
            sdk.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "hi"}], temperature=5
            )
        assert hot.value.param == "temperature"
        assert hot.value.code == "decimal_above_max_value"
        sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "one"}])
        sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "two"}])
        with pytest.raises(openai.RateLimitError) as limited:  # the key's rpm_limit, as natively
            sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "three"}])
        assert limited.value.response.headers["retry-after"]
    with client(service, "not-a-key") as stranger, pytest.raises(openai.AuthenticationError) as denied:
        stranger.models.list()
    assert denied.value.type == "authentication_error"
    viewer = httpx.post(
        f"{service.url}/api/v1/keys", json={"name": "sdk-viewer", "role": "viewer"}, headers=service.headers
    ).json()["key"]
    with client(service, viewer) as sdk, pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}])
    broke_id, broke = user_key(service, monthly_budget_dollars=0)
    with client(service, broke) as sdk, pytest.raises(openai.RateLimitError) as spent:  # OpenAI's quota error
        sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}])
    assert spent.value.code == "insufficient_quota"
    assert "$0.00 " in spent.value.message
    assert key_id != broke_id
    text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=5).text
    endpoint = "/v1/chat/completions"
    assert value(text, "http_requests_total", method="POST", endpoint=endpoint, status="429") == 2
    assert value(text, "http_requests_total", method="POST", endpoint=endpoint, status="400") == 4
    assert "Traceback" not in service.log()


def test_a_body_past_the_limit_is_refused_before_it_is_read(service: Service, tmp_path: Path) -> None:
    huge = b'{"model": "assistant", "messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'
    response = httpx.post(
        f"{service.url}/v1/chat/completions",
        content=huge,
        headers={**service.headers, "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    native = httpx.post(
        f"{service.url}/api/v1/agents/assistant/query",
        content=huge,
        headers={**service.headers, "content-type": "application/json"},
        timeout=30,
    )
    assert native.status_code == 413
    assert native.json()["error"] == "PayloadTooLarge"
