"""Providers bill cached input (read from and written to their prompt cache) and reasoning apart: each is
read from the provider's usage, priced at its own rate, kept in the ledger, counted in
``api_tokens_total{type}``, shown in the summary and returned in the responses, and the four agree."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agentic_backend.billing.pricing import Pricer, Tokens
from agentic_backend.core.config import Settings
from tests.helpers import total

KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")


@pytest.fixture
def settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    agents_file = tmp_path / "agents.json"
    agents_file.write_text(json.dumps([{"name": "claude", "model": "claude-sonnet-4-5"}]))
    return make_settings(agents_file=agents_file)


async def test_cached_and_reasoning_tokens_agree_everywhere(client: httpx.AsyncClient) -> None:
    tokens = dict.fromkeys(KINDS, 0)
    session = (await client.post("/api/v1/sessions")).json()["id"]
    long_question = "Tell me how the ledger, the metrics and the budgets agree. " * 12
    for turn in range(4):  # a conversation: each turn's history is a prefix the provider has cached
        for agent in ("claude", "assistant"):
            body = {"query": f"{long_question} (turn {turn}, {agent})", "session_id": session}
            answer = (await client.post(f"/api/v1/agents/{agent}/query", json=body)).json()
            for kind in KINDS:
                tokens[kind] += answer["tokens"][kind]
    reasoned = await client.post(
        "/v1/chat/completions",
        json={
            "model": "assistant",
            "reasoning_effort": "high",
            "messages": [{"role": "user", "content": "think"}],
        },
    )
    usage = reasoned.json()["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 256
    tokens["input"] += usage["prompt_tokens"]
    tokens["output"] += usage["completion_tokens"]
    tokens["reasoning"] += usage["completion_tokens_details"]["reasoning_tokens"]
    tokens["cache_read"] += usage["prompt_tokens_details"]["cached_tokens"]
    assert tokens["cache_read"] > 0, "later turns read their history from the cache"
    assert tokens["cache_write"] > 0, "claude-* models write to it"
    assert tokens["reasoning"] == 256

    records = (await client.get("/api/v1/usage", params={"limit": 100})).json()["records"]
    ledger = {kind: sum(r[f"{kind}_tokens"] for r in records) for kind in KINDS}
    metrics = (await client.get("/api/v1/monitoring/metrics")).text
    counted = {kind: total(metrics, "api_tokens_total", type=kind) for kind in KINDS}
    assert ledger == tokens
    assert counted == {kind: float(n) for kind, n in tokens.items()}
    summary = (await client.get("/api/v1/monitoring/summary")).json()["costs"]["by_model"]
    claude = next(m for m in summary if m["model"] == "claude-sonnet-4-5")
    assert claude["cache_read_tokens"] > 0
    assert claude["cache_write_tokens"] > 0


def test_each_kind_is_priced_at_its_rate() -> None:
    pricer = Pricer({})
    plain = pricer.cost("gpt-4o-mini", Tokens(10_000, 1_000)).nanodollars
    half_cached = pricer.cost("gpt-4o-mini", Tokens(10_000, 1_000, cache_read=5_000)).nanodollars
    assert half_cached < plain  # cached input is cheaper
    assert plain - half_cached == 5_000 * (150 - 75)  # $0.15 and $0.075 per million: 150 and 75 nanos
    written = pricer.cost("claude-sonnet-4-5", Tokens(10_000, 0, cache_write=10_000)).nanodollars
    fresh = pricer.cost("claude-sonnet-4-5", Tokens(10_000, 0)).nanodollars
    assert (Decimal(written) / fresh) == Decimal("1.25")  # a cache write costs 1.25x the input
    reasoning = pricer.cost("gpt-4o-mini", Tokens(0, 1_000, reasoning=800)).nanodollars
    assert reasoning == pricer.cost("gpt-4o-mini", Tokens(0, 1_000)).nanodollars  # part of the output
    # Rates come from a small sample: a long-context tier applies only to calls that reach it.
    assert fresh == 10_000 * 3_000  # $3 per million input tokens
    huge = pricer.cost("claude-sonnet-4-5", Tokens(300_000, 0)).nanodollars
    assert huge == 300_000 * 6_000  # past 200k input tokens: $6 per million
    bound = pricer.bound("claude-sonnet-4-5", 10_000, 0).nanodollars
    assert bound == written  # a reservation assumes the dearest input
