"""Every answer says what the service itself added beyond its model calls and tools
(``X-Agentic-Overhead-Ms``), and ``agent_overhead_seconds`` records it per agent type: with a provider that
takes 40 ms a call, the header stays far below the query's time, and the histogram counts every answer,
on the native route, the OpenAI face and the Responses API, streamed or not."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from agentic_backend.core.config import Settings
from tests.helpers import value


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(sim_latency_ms=40)


async def test_the_overhead_is_said_and_counted(client: httpx.AsyncClient) -> None:
    answers = []
    for n in range(3):
        began = time.perf_counter()
        answers.append(
            await client.post("/api/v1/agents/calculator/query", json={"query": f"what is {n}+2*3"})
        )
        elapsed = time.perf_counter() - began
        body = answers[-1].json()
        assert body["upstream_seconds"] >= 0.08  # two model calls of 40 ms and a tool
        overhead = float(answers[-1].headers["x-agentic-overhead-ms"]) / 1000
        assert 0 <= overhead < elapsed - body["upstream_seconds"] + 0.005
    chat = await client.post(
        "/v1/chat/completions", json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert float(chat.headers["x-agentic-overhead-ms"]) >= 0
    response = await client.post("/v1/responses", json={"model": "assistant", "input": "hello"})
    assert float(response.headers["x-agentic-overhead-ms"]) >= 0
    payload = {"query": "stream it", "stream": True}
    async with client.stream("POST", "/api/v1/agents/assistant/query", json=payload) as streamed:
        assert [line async for line in streamed.aiter_lines()]
    metrics = (await client.get("/api/v1/monitoring/metrics")).text
    assert value(metrics, "agent_overhead_seconds_count", agent_type="calculator") == 3
    assert value(metrics, "agent_overhead_seconds_count", agent_type="assistant") == 3
    assert (
        value(metrics, "agent_overhead_seconds_count", agent_type="researcher") == 0
    )  # at zero from start-up
    # The histogram holds what the headers said, not the model's 40-ms calls (a timing bound here would
    # depend on the host: the first request pays the cold start).
    said = sum(float(answer.headers["x-agentic-overhead-ms"]) for answer in answers) / 1000
    assert value(metrics, "agent_overhead_seconds_sum", agent_type="calculator") == pytest.approx(
        said, abs=2e-6
    )
