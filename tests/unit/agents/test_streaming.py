"""Streamed agent queries (Server-Sent Events) on both databases: the events, their order and content,
refusals as plain HTTP errors, cached answers, keep-alive comments, and the streaming histograms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from tests.helpers import parse_sse, samples, value

AGENTS = "/api/v1/agents"


async def stream(client: httpx.AsyncClient, agent: str, body: dict[str, Any], **headers: str) -> Any:
    async with client.stream("POST", f"{AGENTS}/{agent}/query", json=body, headers=headers) as response:
        lines = [line async for line in response.aiter_lines()]
    return response, parse_sse(lines)


@pytest.fixture
def db_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url, sim_tokens_per_second=2000)


async def test_a_streamed_answer_is_the_answer_in_events(admin: httpx.AsyncClient) -> None:
    query = {"query": "what is 12*(3+4)?"}
    response, events = await stream(admin, "calculator", {**query, "stream": True})
    plain = (await admin.post(f"{AGENTS}/calculator/query", json=query)).json()  # from the cache
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    kinds = [kind for kind, _ in events]
    # start, the model's tool call, the tool with its result, then the answer's text and its model step
    assert kinds[:3] == ["start", "step", "step"]
    assert kinds[-2:] == ["step", "done"]
    assert set(kinds[3:-2]) == {"delta"}
    assert len(kinds[3:-2]) > 1
    start, done = events[0][1], events[-1][1]
    assert start["agent_type"] == "calculator"
    assert start["request_id"] == done["request_id"]
    assert events[2][1]["kind"] == "tool"
    assert "84" in events[2][1]["detail"]
    assert "".join(data["text"] for kind, data in events if kind == "delta") == done["answer"]
    assert done["answer"] == plain["answer"]  # streamed answers are cached like the others
    assert plain["cached"]


async def test_streaming_is_asked_by_the_accept_header_too(admin: httpx.AsyncClient) -> None:
    response, events = await stream(
        admin, "assistant", {"query": "tell me something"}, accept="text/event-stream"
    )
    assert response.status_code == 200
    assert events[0][0] == "start"
    assert events[-1][0] == "done"
    assert events[-1][1]["tokens"]["output"] > 0
    assert events[-1][1]["cost_dollars"] > 0
    assert events[-1][1]["stop_reason"] == "answer"


async def test_a_cached_answer_streams_as_one_piece(admin: httpx.AsyncClient) -> None:
    body = {"query": "tell me about caching", "stream": True}
    _, first = await stream(admin, "assistant", body)
    _, second = await stream(admin, "assistant", body)
    assert [kind for kind, _ in second] == ["start", "delta", "done"]
    assert second[-1][1]["cached"] is True
    assert second[1][1]["text"] == first[-1][1]["answer"]


async def test_a_refused_query_is_a_plain_http_error_not_a_stream(admin: httpx.AsyncClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response, events = await stream(
        admin, "assistant", {"query": "hi", "session_id": missing, "stream": True}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert events == []
    unknown = await admin.post(f"{AGENTS}/nobody/query", json={"query": "hi", "stream": True})
    assert unknown.status_code == 404
    key = (await admin.post("/api/v1/keys", json={"name": "broke", "role": "user"})).json()
    await admin.put(f"/api/v1/keys/{key['id']}/limits", json={"monthly_budget_dollars": 0})
    broke = await admin.post(
        f"{AGENTS}/assistant/query",
        json={"query": "hi", "stream": True},
        headers={"authorization": f"Bearer {key['key']}"},
    )
    assert broke.status_code == 402
    assert broke.json()["error"] == "BudgetExceeded"


async def test_a_failure_after_the_start_is_an_error_event(admin: httpx.AsyncClient) -> None:
    response, events = await stream(admin, "assistant", {"query": "#fail:server", "stream": True})
    assert response.status_code == 200  # the stream had started: the failure is its last event
    assert [kind for kind, _ in events] == ["start", "error"]
    error = events[-1][1]
    assert error["error"] == "ProviderServerError"
    assert error["request_id"] == events[0][1]["request_id"]
    text = (await admin.get("/api/v1/monitoring/metrics")).text
    assert value(text, "agent_queries_total", agent_type="assistant", status="error") == 1


async def test_the_streaming_histograms_observe_each_streamed_answer_and_call(
    admin: httpx.AsyncClient,
) -> None:
    await admin.post(f"{AGENTS}/assistant/query", json={"query": "not streamed"})
    text = (await admin.get("/api/v1/monitoring/metrics")).text
    assert value(text, "agent_time_to_first_token_seconds_count", agent_type="assistant") == 0
    await stream(admin, "assistant", {"query": "streamed", "stream": True})
    text = (await admin.get("/api/v1/monitoring/metrics")).text
    got = samples(text)
    assert value(text, "agent_time_to_first_token_seconds_count", agent_type="assistant") == 1
    assert value(text, "agent_time_per_output_token_seconds_count", agent_type="assistant") == 1
    calls = {k: n for k, n in got.items() if k[0] == "llm_time_to_first_token_seconds_count" and n > 0}
    assert list(calls.values()) == [1]
    per_token = {k: n for k, n in got.items() if k[0] == "llm_time_per_output_token_seconds_count" and n > 0}
    assert list(per_token.values()) == [1]
    # 2,000 tokens a second: about 0.5 ms a token, in the first bucket of both
    mean = value(text, "agent_time_per_output_token_seconds_sum", agent_type="assistant")
    assert 0 < mean < 0.01


async def test_long_silences_carry_keep_alive_comments(
    make_settings: Callable[..., Settings], client_for: Any, database_url: str
) -> None:
    settings = make_settings(database_url=database_url, sim_latency_ms=300, stream_keepalive_seconds=0.05)
    async with client_for(create_app(settings)) as client:
        _, events = await stream(client, "assistant", {"query": "slow", "stream": True})
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    comments = [data for kind, data in events if kind == "comment"]
    assert len(comments) >= 3  # 300 ms of model latency, a comment every 50 ms
    assert set(comments) == {"keep-alive"}
    assert kinds.index("comment") < kinds.index("delta")
