"""A streamed answer whose client goes away, on a real server: the model call stops, what it consumed is
charged and written to the ledger, nothing stays reserved, and the HTTP metric counts 499."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import value
from tests.integration.harness import Service, reservations, wait_until

pytestmark = pytest.mark.integration


def test_a_client_that_leaves_mid_stream_is_charged_what_it_consumed(tmp_path: Path) -> None:
    # 20 tokens a second: the answer's few dozen tokens take seconds, and the client leaves after three.
    service = Service(tmp_path, env={"AGENTIC_SIM_TOKENS_PER_SECOND": "20"})
    try:
        created = httpx.post(
            f"{service.url}/api/v1/keys",
            json={"name": "streamer", "role": "user", "monthly_budget_dollars": 1.0},
            headers=service.headers,
        ).json()
        headers = {"authorization": f"Bearer {created['key']}"}
        body = {"query": "tell me a long story about metrics", "stream": True}
        deltas = 0
        started = time.monotonic()
        with (
            httpx.Client(base_url=service.url, headers=headers, timeout=30) as client,
            client.stream("POST", "/api/v1/agents/assistant/query", json=body) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                deltas += line.startswith("event: delta")
                if deltas == 3:
                    break  # leaving the block closes the connection mid-stream
        left_after = time.monotonic() - started
        assert left_after < 2  # it really left early: the whole answer takes longer

        def ledger() -> dict[str, object] | None:
            records = httpx.get(f"{service.url}/api/v1/usage", headers=service.headers, timeout=5).json()
            rows = [r for r in records["records"] if r["key_id"] == created["id"]]
            return rows[0] if rows else None

        wait_until(lambda: ledger() is not None, timeout=10, what="the cancelled query's ledger row")
        row = ledger()
        assert row is not None
        print(f"left after {deltas} deltas ({left_after:.2f} s); ledger row: {row}")
        assert row["status"] == "cancelled"
        assert row["error_kind"] == "client_disconnect"
        assert isinstance(row["output_tokens"], int)
        assert 3 <= row["output_tokens"] < 20  # what was streamed, not the whole answer nor nothing
        assert isinstance(row["input_tokens"], int)
        assert row["input_tokens"] > 0
        assert isinstance(row["cost_dollars"], float)
        assert row["cost_dollars"] > 0
        assert reservations(tmp_path / "data" / "agentic.db", created["id"]) == (0, 0)
        with sqlite3.connect(tmp_path / "data" / "agentic.db") as connection:
            spent = connection.execute(
                "SELECT sum(spent_nanodollars) FROM key_spend WHERE key_id = ?", (created["id"],)
            ).fetchone()[0]
        assert spent == round(row["cost_dollars"] * 1e9)

        text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=5).text
        endpoint = "/api/v1/agents/{agent_type}/query"
        assert value(text, "http_requests_total", method="POST", endpoint=endpoint, status="499") == 1
        assert value(text, "http_requests_total", method="POST", endpoint=endpoint, status="200") is None
        assert value(text, "agent_queries_total", agent_type="assistant", status="cancelled") == 1
        tokens = value(text, "api_tokens_total", provider="sim", model="gpt-4o-mini", type="output")
        assert tokens == row["output_tokens"]  # the metrics equal the ledger
        assert "Traceback" not in service.log()
    finally:
        service.stop()
