"""Agent queries over HTTP on both databases: answers, accounting, cache, limits, errors, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.billing.budget import Budgets, month_of
from agentic_backend.billing.pricing import NANOS_PER_DOLLAR, Pricer
from agentic_backend.core.config import Settings
from tests.conftest import ClientFor, FakeClock
from tests.helpers import total, value

AGENTS = "/api/v1/agents"


@pytest.fixture
def db_settings(make_settings: Callable[..., Settings], database_url: str, tmp_path: Path) -> Settings:
    agents_file = tmp_path / "agents.json"
    agents_file.write_text(
        json.dumps(
            [
                {"name": "hasty", "model": "gpt-4o-mini", "tools": ["calculate"], "max_steps": 1},
                {"name": "mystery", "model": "no-such-model-anywhere"},
            ]
        )
    )
    return make_settings(database_url=database_url, agents_file=agents_file)


async def metric_sum(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    return total((await client.get("/api/v1/monitoring/metrics")).text, name, **labels)


async def test_agent_types_are_listed_with_configured_ones(admin: httpx.AsyncClient) -> None:
    names = [a["name"] for a in (await admin.get(AGENTS)).json()]
    assert {"assistant", "researcher", "calculator", "hasty", "mystery"} == set(names)


async def test_a_tool_loop_answers_and_is_accounted_exactly(admin: httpx.AsyncClient) -> None:
    queries = [
        ("calculator", "what is 12*(3+4)?"),
        ("researcher", "how do I compute the error ratio?"),
        ("assistant", "hello"),
        ("calculator", "and 2**10?"),
    ]
    responses = []
    for agent, query in queries:
        response = await admin.post(f"{AGENTS}/{agent}/query", json={"query": query})
        assert response.status_code == 200, response.text
        responses.append(response.json())
    assert "84" in responses[0]["answer"]
    assert [s["kind"] for s in responses[0]["steps"]] == ["model", "tool", "model"]
    ledger = (await admin.get("/api/v1/usage")).json()["totals"]
    response_cost = sum(r["cost_dollars"] for r in responses)
    metric_cost = await metric_sum(admin, "api_cost_dollars_total")
    assert ledger["queries"] == 4
    assert round(ledger["cost_dollars"], 9) == round(response_cost, 9) == round(metric_cost, 9)
    assert ledger["cost_dollars"] > 0
    tokens = sum(r["tokens"]["input"] + r["tokens"]["output"] for r in responses)
    assert (
        ledger["input_tokens"] + ledger["output_tokens"]
        == tokens
        == await metric_sum(admin, "api_tokens_total", type="input")
        + await metric_sum(admin, "api_tokens_total", type="output")
    )
    assert await metric_sum(admin, "agent_queries_total", status="success") == 4
    assert await metric_sum(admin, "agent_tool_calls_total", tool="calculate", outcome="ok") == 2
    summary = (await admin.get("/api/v1/monitoring/summary")).json()
    assert round(summary["costs"]["total_dollars"], 9) == round(ledger["cost_dollars"], 9)
    assert summary["agents"]["by_type"]["calculator"]["queries"]["success"] == 2
    assert summary["spend_by_key"][0]["name"] == "admin"
    assert round(summary["spend_by_key"][0]["cost_dollars"], 9) == round(ledger["cost_dollars"], 9)


async def test_identical_stateless_queries_hit_the_cache_at_no_cost(admin: httpx.AsyncClient) -> None:
    first = (await admin.post(f"{AGENTS}/assistant/query", json={"query": "What is  a cache?"})).json()
    second = (await admin.post(f"{AGENTS}/assistant/query", json={"query": "what is a CACHE?"})).json()
    assert not first["cached"]
    assert second["cached"]
    assert second["cost_dollars"] == 0
    assert second["answer"] == first["answer"]
    assert second["request_id"] != first["request_id"]
    assert await metric_sum(admin, "cache_operations_total", operation="get", result="hit") == 1
    assert await metric_sum(admin, "cache_operations_total", operation="set", result="ok") == 1
    assert round(await metric_sum(admin, "cache_saved_dollars_total"), 9) == round(first["cost_dollars"], 9)
    assert await metric_sum(admin, "cache_size_bytes") > 0
    # With a session the query has history, so it is never answered from the cache.
    session = (await admin.post("/api/v1/sessions")).json()["id"]
    third = (
        await admin.post(
            f"{AGENTS}/assistant/query", json={"query": "what is a cache?", "session_id": session}
        )
    ).json()
    assert not third["cached"]
    usage = (await admin.get("/api/v1/usage")).json()
    assert usage["totals"]["cached"] == 1


async def test_sessions_carry_history_into_the_next_query(admin: httpx.AsyncClient) -> None:
    session = (await admin.post("/api/v1/sessions")).json()["id"]
    first = (
        await admin.post(f"{AGENTS}/assistant/query", json={"query": "remember 42", "session_id": session})
    ).json()
    second = (
        await admin.post(f"{AGENTS}/assistant/query", json={"query": "remember 42", "session_id": session})
    ).json()
    assert second["tokens"]["input"] > first["tokens"]["input"]
    history = (await admin.get(f"/api/v1/sessions/{session}")).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


async def test_a_query_in_a_session_that_is_not_there_is_refused_not_failed(admin: httpx.AsyncClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response = await admin.post(f"{AGENTS}/assistant/query", json={"query": "hi", "session_id": missing})
    assert response.status_code == 404, response.text
    assert await metric_sum(admin, "agent_queries_total", agent_type="assistant", status="rejected") == 1
    assert await metric_sum(admin, "agent_queries_total", status="error") == 0
    records = (await admin.get("/api/v1/usage")).json()["records"]
    assert [(r["status"], r["error_kind"]) for r in records] == [("rejected", None)]


async def test_the_step_limit_stops_the_loop(admin: httpx.AsyncClient) -> None:
    response = (await admin.post(f"{AGENTS}/hasty/query", json={"query": "what is 6*7"})).json()
    assert response["stop_reason"] == "step_limit"
    assert [s["kind"] for s in response["steps"]] == ["model", "tool"]


async def test_unpriced_models_are_counted_not_silently_free(admin: httpx.AsyncClient) -> None:
    response = (await admin.post(f"{AGENTS}/mystery/query", json={"query": "hi"})).json()
    assert response["cost_dollars"] == 0
    assert await metric_sum(admin, "api_unpriced_calls_total", model="no-such-model-anywhere") == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [("rate_limit", 429), ("auth", 502), ("server", 502), ("bad_response", 502), ("timeout", 504)],
)
async def test_provider_errors_are_classified(admin: httpx.AsyncClient, kind: str, status: int) -> None:
    response = await admin.post(f"{AGENTS}/assistant/query", json={"query": f"please #fail:{kind}"})
    assert response.status_code == status
    assert response.json()["detail"]
    assert await metric_sum(admin, "llm_errors_total", kind=kind) == 1
    assert await metric_sum(admin, "agent_queries_total", agent_type="assistant", status="error") == 1
    records = (await admin.get("/api/v1/usage", params={"status": "error"})).json()["records"]
    assert records[0]["error_kind"] == kind


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (f"{AGENTS}/nobody/query", {"query": "hi"}, 404, "available: assistant"),
        (f"{AGENTS}/assistant/query", {"query": ""}, 422, "query"),
        (f"{AGENTS}/assistant/query", {"query": "   "}, 422, "blank"),
        (f"{AGENTS}/assistant/query", {"query": "x" * 20_001}, 422, "query"),
        (f"{AGENTS}/assistant/query", {"query": "hi", "session_id": "nope"}, 422, "session_id"),
        (
            f"{AGENTS}/assistant/query",
            {"query": "hi", "session_id": "6f1c1c56-2b4e-4d3a-9a55-3c2b1d0e9f11"},
            404,
            "No session",
        ),
        (f"{AGENTS}/assistant/query", {"query": "hi", "temperature": 2}, 422, "temperature"),
        (f"{AGENTS}/assistant/query", ["hi"], 422, "valid dictionary"),
    ],
)
async def test_bad_queries_get_a_clear_4xx(
    admin: httpx.AsyncClient, path: str, body: Any, status: int, needle: str
) -> None:
    response = await admin.post(path, json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


async def test_malformed_json_is_a_4xx(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        f"{AGENTS}/assistant/query", content=b'{"query": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize("path", [f"{AGENTS}/assistant/query", "/v1/chat/completions", "/v1/responses"])
async def test_a_body_is_read_only_for_a_known_key(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, path: str
) -> None:
    """The query routes check the caller's key before they read the body (core/bodies.py): a caller without
    one learns nothing of what its body would have got, whether it decodes or not."""
    for body in (b'{"query": ', b'{"unknown": 1}', b""):
        headers = {"content-type": "application/json"}
        refused = await anonymous.post(path, content=body, headers=headers)
        assert refused.status_code == 401, refused.text
        invalid = await admin.post(path, content=body, headers=headers)
        assert invalid.status_code in (400, 422), invalid.text
        assert "api key" not in invalid.text.lower()


async def test_rate_limit_per_key(admin: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    created = (await admin.post("/api/v1/keys", json={"name": "slow", "role": "user", "rpm_limit": 3})).json()
    headers = {"authorization": f"Bearer {created['key']}"}
    for i in range(3):
        assert (
            await anonymous.post(f"{AGENTS}/assistant/query", json={"query": f"q{i}"}, headers=headers)
        ).status_code == 200
    refused = await anonymous.post(f"{AGENTS}/assistant/query", json={"query": "q4"}, headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"] == "RateLimited"
    # Other keys are not limited by it.
    assert (await admin.post(f"{AGENTS}/assistant/query", json={"query": "q5"})).status_code == 200
    assert await metric_sum(admin, "agent_queries_total", status="rejected") == 1


@pytest.mark.parametrize(("scope", "shared"), [("key", False), ("global", True)])
async def test_the_cache_is_per_key_unless_shared_on_purpose(
    make_settings: Callable[..., Settings], client_for: ClientFor, scope: str, shared: bool
) -> None:
    """Two tenants asking the same question: by default neither receives the other's answer (nor learns
    from a hit that the other asked); AGENTIC_CACHE_SCOPE=global shares answers on purpose."""
    app = create_app(make_settings(cache_scope=scope))
    async with client_for(app) as admin:
        other = (await admin.post("/api/v1/keys", json={"name": "tenant-b", "role": "user"})).json()["key"]
        question = {"query": "what did the other tenant ask?"}
        assert not (await admin.post(f"{AGENTS}/assistant/query", json=question)).json()["cached"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"authorization": f"Bearer {other}"},
        ) as tenant_b:
            answer = (await tenant_b.post(f"{AGENTS}/assistant/query", json=question)).json()
            assert answer["cached"] is shared
            assert (await tenant_b.post(f"{AGENTS}/assistant/query", json=question)).json()["cached"]
        summary = (await admin.get("/api/v1/monitoring/summary")).json()
        assert summary["cache"]["hits"] == (2 if shared else 1)


async def test_tokens_per_minute_per_key(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, clock: FakeClock
) -> None:
    created = (
        await admin.post("/api/v1/keys", json={"name": "wordy", "role": "user", "tpm_limit": 3000})
    ).json()
    assert created["tpm_limit"] == 3000
    headers = {"authorization": f"Bearer {created['key']}"}
    used, codes = 0, []
    for i in range(40):
        response = await anonymous.post(f"{AGENTS}/assistant/query", json={"query": f"t{i}"}, headers=headers)
        codes.append(response.status_code)
        if response.status_code == 200:
            used += response.json()["tokens"]["input"] + response.json()["tokens"]["output"]
        else:
            assert response.status_code == 429
            assert response.json()["error"] == "RateLimited"
            assert "tokens per minute" in response.json()["detail"]
            assert response.headers["x-ratelimit-limit"] == "3000"
            assert 1 <= int(response.headers["retry-after"]) <= 60
            break
    assert 429 in codes
    assert 0 < used <= 3000  # each call held its most before it ran: the window never passed the limit
    clock.advance(61)
    again = await anonymous.post(f"{AGENTS}/assistant/query", json={"query": "later"}, headers=headers)
    assert again.status_code == 200


@pytest.mark.parametrize("estimate", [1e-9, 0.0, 0.0005])
async def test_budgets_hold_within_one_model_call_whatever_the_estimate(
    make_settings: Callable[..., Settings],
    database_url: str,
    clock: FakeClock,
    client_for: ClientFor,
    estimate: float,
) -> None:
    """A per-query estimate far below the real cost used to let 20 concurrent queries spend 4.9x a
    $0.002 budget. Each model call now reserves the most it can cost: the overspend is at most one call."""
    settings = make_settings(database_url=database_url, query_cost_estimate_dollars=estimate)
    app = create_app(settings, clock=clock)
    async with client_for(app) as admin:
        created = (
            await admin.post(
                "/api/v1/keys", json={"name": "thrifty", "role": "user", "monthly_budget_dollars": 0.002}
            )
        ).json()
        headers = {"authorization": f"Bearer {created['key']}"}
        # The researcher makes two model calls per query (a search, then the answer).
        responses = await asyncio.gather(
            *(
                admin.post(
                    f"{AGENTS}/researcher/query", json={"query": f"error ratio question {i}"}, headers=headers
                )
                for i in range(20)
            )
        )
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 402}, [r.text for r in responses if r.status_code not in (200, 402)]
        answered = [r.json() for r in responses if r.status_code == 200]
        assert answered
        assert 402 in codes
        pricer = Pricer(settings.model_prices)
        calls = [
            pricer.price(a["model"], s["input_tokens"], s["output_tokens"]).nanodollars
            for a in answered
            for s in a["steps"]
            if s["kind"] == "model"
        ]
        spent = (await admin.get("/api/v1/usage", params={"key_id": created["id"]})).json()["totals"]
        assert round(spent["cost_dollars"], 9) == round(sum(a["cost_dollars"] for a in answered), 9)
        assert spent["cost_dollars"] * NANOS_PER_DOLLAR <= 0.002 * NANOS_PER_DOLLAR + max(calls)
        budgets = Budgets(state.of(app).database)
        assert await budgets.spent(created["id"], month_of(clock.now())) == round(
            spent["cost_dollars"] * NANOS_PER_DOLLAR
        )
        assert await budgets.reserved(created["id"], month_of(clock.now())) == (0, 0)
        refused = next(r for r in responses if r.status_code == 402).json()
        assert "monthly budget" in refused["detail"]
        raised = await admin.put(f"/api/v1/keys/{created['id']}/limits", json={"monthly_budget_dollars": 1.0})
        assert raised.status_code == 200
        again = await admin.post(f"{AGENTS}/researcher/query", json={"query": "error ratio"}, headers=headers)
        assert again.status_code == 200


async def test_usage_is_own_unless_admin(admin: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    user = (await admin.post("/api/v1/keys", json={"name": "u", "role": "user"})).json()
    headers = {"authorization": f"Bearer {user['key']}"}
    await anonymous.post(f"{AGENTS}/assistant/query", json={"query": "mine"}, headers=headers)
    await admin.post(f"{AGENTS}/assistant/query", json={"query": "admin's"})
    own = (await anonymous.get("/api/v1/usage", headers=headers)).json()
    assert own["totals"]["queries"] == 1
    assert {r["key_id"] for r in own["records"]} == {user["id"]}
    assert (await anonymous.get("/api/v1/usage", params={"key_id": 1}, headers=headers)).status_code == 403
    everyone = (await admin.get("/api/v1/usage")).json()
    assert everyone["totals"]["queries"] == 2
    viewer = (await admin.post("/api/v1/keys", json={"name": "v", "role": "viewer"})).json()
    forbidden = await anonymous.post(
        f"{AGENTS}/assistant/query", json={"query": "x"}, headers={"x-api-key": viewer["key"]}
    )
    assert forbidden.status_code == 403
    assert (
        value(
            (await admin.get("/api/v1/monitoring/metrics")).text,
            "permission_checks_total",
            permission="agents:query",
            result="denied",
        )
        == 1
    )


async def test_usage_filters_by_type_status_and_time(admin: httpx.AsyncClient) -> None:
    await admin.post(f"{AGENTS}/assistant/query", json={"query": "one"})
    await admin.post(f"{AGENTS}/calculator/query", json={"query": "2+2"})
    await admin.post(f"{AGENTS}/assistant/query", json={"query": "two #fail:server"})
    by_type = (await admin.get("/api/v1/usage", params={"agent_type": "calculator"})).json()
    assert by_type["totals"]["queries"] == 1
    errors = (await admin.get("/api/v1/usage", params={"status": "error"})).json()
    assert [r["agent_type"] for r in errors["records"]] == ["assistant"]
    future = (await admin.get("/api/v1/usage", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future["totals"]["queries"] == 0
    everything = (
        await admin.get("/api/v1/usage", params={"since": "2000-01-01T00:00:00+00:00", "limit": 1})
    ).json()
    assert everything["totals"]["queries"] == 3
    assert len(everything["records"]) == 1
    for bad in ({"since": "yesterday"}, {"status": "lost"}, {"limit": -1}, {"limit": 5000}):
        response = await admin.get("/api/v1/usage", params=bad)
        assert response.status_code == 422, bad
    # The calendar's edges: past year 9999 or before year 1 once in UTC (they were OverflowErrors, 500s),
    # and the last and first day datetime holds: 422 with a sentence; a day inside them: answered.
    for edge in (
        {"since": "9999-12-31T23:59:59-23:59"},
        {"until": "0001-01-01T00:00:00+23:59"},
        {"since": "9999-12-31T23:59:59Z"},
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00-00:01", "until": "9999-12-31T23:59:59+00:01"},
    ):
        response = await admin.get("/api/v1/usage", params=edge)
        assert response.status_code == 422, (edge, response.text)
        assert "between 0001-01-02" in response.text
    inside = {"since": "0001-01-02T00:00:00Z", "until": "9999-12-30T23:59:59Z"}
    assert (await admin.get("/api/v1/usage", params=inside)).json()["totals"]["queries"] == 3
