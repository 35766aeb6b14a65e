"""The OpenAI and Anthropic adapters, through the official SDKs, over real HTTP against ``sim-llm``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentic_backend.agents.registry import BUILTIN
from agentic_backend.agents.runtime import run_agent
from agentic_backend.agents.tools import TOOLS
from agentic_backend.llm.anthropic_provider import AnthropicProvider
from agentic_backend.llm.base import Completion, Message, Provider, ToolSpec
from agentic_backend.llm.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from agentic_backend.llm.openai_provider import OpenAIProvider
from tests.helpers import parse_sse, samples
from tests.integration.harness import Service, SimLLM

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimLLM]:
    server = SimLLM(tmp_path_factory.mktemp("sim-llm"))
    yield server
    server.stop()


def make(kind: str, server: SimLLM, *, retries: int = 0, timeout: float = 10) -> Provider:
    if kind == "openai":
        return OpenAIProvider(
            api_key="sk-test", base_url=f"{server.url}/v1", timeout=timeout, max_retries=retries
        )
    return AnthropicProvider(api_key="sk-ant-test", base_url=server.url, timeout=timeout, max_retries=retries)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_answers_with_token_usage(sim_llm: SimLLM, kind: str) -> None:
    provider = make(kind, sim_llm)
    before = sim_llm.calls()[kind]
    try:
        completion = await provider.complete(
            "gpt-4o-mini", [Message("system", "be brief"), Message("user", "hello")], [], timeout=10
        )
    finally:
        await provider.close()
    assert completion.text
    assert completion.input_tokens > 0
    assert completion.output_tokens > 0
    assert sim_llm.calls()[kind] == before + 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_tool_loop_round_trips_through_the_wire_format(sim_llm: SimLLM, kind: str) -> None:
    provider = make(kind, sim_llm)
    calculator = next(a for a in BUILTIN if a.name == "calculator")
    used: list[Completion] = []
    tools: list[tuple[str, bool]] = []

    class Account:
        opened = 0

        async def open(self, messages: list[Message], tools: list[ToolSpec], max_tokens: int) -> bool:
            self.opened += 1
            return True

        async def close(
            self,
            completion: Completion | None,
            seconds: float,
            first_token: float | None = None,
            error: BaseException | None = None,
        ) -> None:
            assert completion is not None
            used.append(completion)

    account = Account()
    try:
        result = await run_agent(
            calculator,
            provider,
            "what is 12*(3+4)?",
            [],
            deadline=time.monotonic() + 30,
            account=account,
            on_tool=lambda name, ok, _seconds: tools.append((name, ok)),
        )
    finally:
        await provider.close()
    assert result.stop_reason == "answer"
    assert "84" in result.answer
    assert tools == [("calculate", True)]
    assert len(used) == 2
    assert account.opened == 2  # each call opened (budget reserved) and closed (settled)
    assert used[1].input_tokens > used[0].input_tokens  # the tool result went back to the model


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("query", "tools"),
    [
        ("tell me about budgets", []),
        ("what is 12*(3+4)?", [next(a for a in BUILTIN if a.name == "calculator")]),
    ],
    ids=["text", "tool call"],
)
async def test_a_streamed_call_is_the_same_call_in_pieces(
    sim_llm: SimLLM, kind: str, query: str, tools: list[Any]
) -> None:
    """The SDK's streaming over each wire format: the pieces make the text, and the completion (text,
    tool calls assembled from their fragments, usage from the last event) equals the unstreamed one."""
    provider = make(kind, sim_llm)
    specs = [TOOLS[name].spec for agent in tools for name in agent.tools]
    messages = [Message("system", "be brief"), Message("user", query)]
    pieces: list[str] = []

    async def collect(piece: str) -> None:
        pieces.append(piece)

    try:
        whole = await provider.complete("gpt-4o-mini", messages, specs, timeout=10)
        streamed = await provider.complete("gpt-4o-mini", messages, specs, timeout=10, on_text=collect)
        with pytest.raises(ProviderRateLimited):  # errors are classified alike when streaming
            await provider.complete(
                "gpt-4o-mini", [Message("user", "#fail:rate_limit")], [], timeout=10, on_text=collect
            )
    finally:
        await provider.close()
    assert streamed == whole
    assert "".join(pieces) == (whole.text or "")
    if whole.text:
        assert len(pieces) > 1
    else:
        assert whole.tool_calls
        assert whole.tool_calls[0].arguments == {"expression": "12*(3+4)"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_max_tokens_travels_over_the_wire(sim_llm: SimLLM, kind: str) -> None:
    """The agent's max_output_tokens reaches the provider: a budget reservation assumes it bounds a call."""
    provider = make(kind, sim_llm)
    try:
        short = await provider.complete(
            "gpt-4o-mini", [Message("user", "tell me everything")], [], timeout=30, max_tokens=3
        )
        long = await provider.complete(
            "gpt-4o-mini", [Message("user", "tell me everything")], [], timeout=30, max_tokens=1000
        )
    finally:
        await provider.close()
    assert short.output_tokens <= 3
    assert long.output_tokens > short.output_tokens


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("rate_limit", ProviderRateLimited),
        ("auth", ProviderAuthError),
        ("server", ProviderServerError),
        ("bad_response", ProviderBadResponse),
        ("timeout", ProviderTimeout),
    ],
)
async def test_errors_are_classified(
    sim_llm: SimLLM, kind: str, failure: str, error: type[ProviderError]
) -> None:
    provider = make(kind, sim_llm, timeout=1.0)
    try:
        with pytest.raises(error):
            await provider.complete("gpt-4o-mini", [Message("user", f"x #fail:{failure}")], [], timeout=1.0)
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_rate_limits_and_server_errors_are_retried_with_backoff(sim_llm: SimLLM, kind: str) -> None:
    provider = make(kind, sim_llm, retries=2)
    before = sim_llm.calls()[kind]
    try:
        with pytest.raises(ProviderRateLimited):
            await provider.complete("gpt-4o-mini", [Message("user", "#fail:rate_limit")], [], timeout=30)
        with pytest.raises(ProviderAuthError):  # not retried: retrying cannot fix credentials
            await provider.complete("gpt-4o-mini", [Message("user", "#fail:auth")], [], timeout=30)
    finally:
        await provider.close()
    assert sim_llm.calls()[kind] == before + 3 + 1


def test_the_service_runs_agents_on_openai_and_anthropic_over_http(sim_llm: SimLLM, tmp_path: Path) -> None:
    agents_file = tmp_path / "agents.json"
    agents_file.write_text(
        json.dumps(
            [
                {"name": "oai", "provider": "openai", "model": "gpt-4o-mini", "tools": ["calculate"]},
                {
                    "name": "claude",
                    "provider": "anthropic",
                    "model": "claude-3-5-haiku-latest",
                    "tools": ["search_documents"],
                },
            ]
        )
    )
    service = Service(
        tmp_path,
        env={
            "AGENTIC_AGENTS_FILE": str(agents_file),
            "AGENTIC_OPENAI_API_KEY": "sk-test-secret-value",
            "AGENTIC_OPENAI_BASE_URL": f"{sim_llm.url}/v1",
            "AGENTIC_ANTHROPIC_API_KEY": "sk-ant-test-secret-value",
            "AGENTIC_ANTHROPIC_BASE_URL": sim_llm.url,
        },
    )
    try:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=30) as client:
            oai = client.post("/api/v1/agents/oai/query", json={"query": "what is 6*7?"})
            assert oai.status_code == 200, oai.text
            assert "42" in oai.json()["answer"]
            claude = client.post(
                "/api/v1/agents/claude/query", json={"query": "how is the error ratio computed?"}
            )
            assert claude.status_code == 200, claude.text
            assert claude.json()["cost_dollars"] > 0
            for agent in ("oai", "claude"):  # streamed end to end: the adapters stream from sim-llm
                body = {"query": "tell me about the cache", "stream": True}
                with client.stream("POST", f"/api/v1/agents/{agent}/query", json=body) as streamed:
                    assert streamed.headers["content-type"].startswith("text/event-stream")
                    events = parse_sse(streamed.iter_lines())
                kinds = [kind for kind, _ in events]
                assert kinds[0] == "start"
                assert kinds[-1] == "done", events
                done = events[-1][1]
                deltas = "".join(data["text"] for kind, data in events if kind == "delta")
                assert kinds.count("delta") > 1
                assert deltas.endswith(done["answer"])
                assert done["tokens"]["output"] > 0
            failed = client.post("/api/v1/agents/oai/query", json={"query": "#fail:server"})
            assert failed.status_code == 502
            text = client.get("/api/v1/monitoring/metrics").text
            got = samples(text)
            assert (
                got[("api_cost_dollars_total", frozenset({("provider", "openai"), ("model", "gpt-4o-mini")}))]
                > 0
            )
            assert (
                got[
                    (
                        "llm_errors_total",
                        frozenset({("provider", "openai"), ("model", "gpt-4o-mini"), ("kind", "server")}),
                    )
                ]
                == 1
            )
            assert "sk-test-secret-value" not in text + service.log()
    finally:
        service.stop()
