"""The OpenTelemetry GenAI semantic conventions' metrics beside the seed's: what each model call and each
query records, the error and _OTHER labels, strict OpenMetrics validity, and AGENTIC_GENAI_METRICS=false."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.llm.base import Completion
from tests.conftest import ClientFor
from tests.helpers import value

AGENTS = "/api/v1/agents"
CALL = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "sim",
    "gen_ai_request_model": "gpt-4o-mini",
    "gen_ai_response_model": "gpt-4o-mini",
}
QUERY = {
    "gen_ai_operation_name": "invoke_agent",
    "gen_ai_provider_name": "sim",
    "gen_ai_request_model": "calculator",
    "gen_ai_response_model": "gpt-4o-mini",
}


async def metrics(client: httpx.AsyncClient) -> str:
    return (await client.get("/api/v1/monitoring/metrics")).text


async def test_each_call_and_query_is_recorded_with_the_conventions_names(admin: httpx.AsyncClient) -> None:
    answer = (await admin.post(f"{AGENTS}/calculator/query", json={"query": "what is 6*7?"})).json()
    text = await metrics(admin)
    calls = len([s for s in answer["steps"] if s["kind"] == "model"])
    assert calls == 2  # the tool call, then the answer
    assert value(text, "gen_ai_client_operation_duration_seconds_count", **CALL, error_type="") == calls
    assert value(text, "gen_ai_client_token_usage_count", **CALL, gen_ai_token_type="input") == calls
    assert (
        value(text, "gen_ai_client_token_usage_sum", **CALL, gen_ai_token_type="input")
        == answer["tokens"]["input"]
    )
    assert (
        value(text, "gen_ai_client_token_usage_sum", **CALL, gen_ai_token_type="output")
        == answer["tokens"]["output"]
    )
    assert value(text, "gen_ai_server_request_duration_seconds_count", **QUERY, error_type="") == 1
    # The conventions' boundaries, and an error's type as a label.
    assert 'le="81.92"' in text
    assert 'le="67108864.0"' in text
    await admin.post(f"{AGENTS}/calculator/query", json={"query": "#fail:rate_limit"})
    text = await metrics(admin)
    assert value(text, "gen_ai_client_operation_duration_seconds_count", **CALL, error_type="rate_limit") == 1
    assert value(text, "gen_ai_server_request_duration_seconds_count", **QUERY, error_type="rate_limit") == 1
    # Strict OpenMetrics consumers take it (the empty error_type is a label OpenMetrics allows).
    openmetrics = (
        await admin.get("/api/v1/monitoring/metrics", headers={"accept": "application/openmetrics-text"})
    ).text
    names = {family.name for family in text_string_to_metric_families(openmetrics)}
    assert {"gen_ai_client_operation_duration_seconds", "gen_ai_client_token_usage"} <= names


async def test_streamed_answers_record_the_server_time_to_first_token(admin: httpx.AsyncClient) -> None:
    body = {"query": "tell me something", "stream": True}
    async with admin.stream("POST", f"{AGENTS}/assistant/query", json=body) as response:
        assert response.status_code == 200
        _ = [line async for line in response.aiter_lines()]
    text = await metrics(admin)
    labels = {**QUERY, "gen_ai_request_model": "assistant"}
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count", **labels) == 1
    assert value(text, "gen_ai_server_time_per_output_token_seconds_count", **labels) == 1


async def test_a_response_model_no_agent_configures_is_other(admin: httpx.AsyncClient, db_app: Any) -> None:
    """Providers choose the response model's string (a dated snapshot, anything): bounded to _OTHER."""
    sim = state.of(db_app).agents._providers["sim"]
    original = sim.complete

    async def renamed(*args: Any, **kwargs: Any) -> Completion:
        completion: Completion = await original(*args, **kwargs)
        return dataclasses.replace(completion, model="gpt-4o-mini-2024-07-18-attacker-chosen")

    sim.complete = renamed
    await admin.post(f"{AGENTS}/assistant/query", json={"query": "hi"})
    text = await metrics(admin)
    other = {**CALL, "gen_ai_response_model": "_OTHER"}
    assert value(text, "gen_ai_client_operation_duration_seconds_count", **other, error_type="") == 1
    assert "attacker-chosen" not in text


@pytest.mark.parametrize("enabled", [True, False])
async def test_agentic_genai_metrics_false_leaves_them_out(
    make_settings: Callable[..., Settings], client_for: ClientFor, enabled: bool
) -> None:
    async with client_for(create_app(make_settings(genai_metrics=enabled))) as client:
        await client.post(f"{AGENTS}/assistant/query", json={"query": "hi"})
        text = await metrics(client)
    assert ("gen_ai_client_operation_duration_seconds" in text) is enabled
    assert ("gen_ai_server_request_duration_seconds" in text) is enabled
    assert "agent_query_duration_seconds" in text  # the seed's stay either way
