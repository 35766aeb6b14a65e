"""AGENTIC_LOG_FORMAT=json on a real server: every log line is a JSON object, and each request has one
line with its request id, trace id, key id (never the secret), route, status, duration, tokens and cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Service, wait_until
from tests.integration.otlp import OtlpReceiver

pytestmark = pytest.mark.integration


def records(service: Service) -> list[dict[str, Any]]:
    lines = [line for line in service.log().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
    return parsed


def test_one_json_line_per_request_with_what_an_operator_searches_by(tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    env = {"AGENTIC_LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    service = Service(tmp_path, env=env, access_log=True)
    try:
        answer = httpx.post(
            f"{service.url}/api/v1/agents/calculator/query",
            json={"query": "what is 6*7?"},
            headers=service.headers,
            timeout=30,
        )
        assert answer.status_code == 200
        refused = httpx.get(
            f"{service.url}/api/v1/keys", headers={"authorization": "Bearer wrong"}, timeout=10
        )
        assert refused.status_code == 401

        def request_lines() -> list[dict[str, Any]]:
            return [r for r in records(service) if r.get("logger") == "agentic_backend.access"]

        wait_until(lambda: len(request_lines()) >= 3, timeout=10, what="the request lines")
        lines = request_lines()
        query = next(r for r in lines if r["route"] == "/api/v1/agents/{agent_type}/query")
        body = answer.json()
        assert query["message"] == "request"
        assert query["request_id"] == body["request_id"]
        assert query["trace_id"] == answer.headers["x-trace-id"]
        assert query["key_id"] == 1
        assert query["method"] == "POST"
        assert query["status"] == 200
        assert query["duration_seconds"] > 0
        assert query["input_tokens"] == body["tokens"]["input"]
        assert query["output_tokens"] == body["tokens"]["output"]
        assert query["cost_usd"] == pytest.approx(body["cost_dollars"])
        denied = next(r for r in lines if r["route"] == "/api/v1/keys")
        assert denied["status"] == 401
        assert denied["key_id"] is None
        assert service.admin_key not in service.log()
        assert "wrong" not in json.dumps(lines)
        assert all("time" in r and "level" in r for r in records(service))  # every line, uvicorn's too
    finally:
        service.stop()
        receiver.stop()


def test_no_access_log_leaves_the_request_lines_out(tmp_path: Path) -> None:
    service = Service(tmp_path, env={"AGENTIC_LOG_FORMAT": "json"})  # the harness passes --no-access-log
    try:
        for path in ("/health", "/api/v1/monitoring/metrics", "/nowhere"):
            httpx.get(f"{service.url}{path}", timeout=10)
        warned = httpx.get(
            f"{service.url}/api/v1/keys", headers={"authorization": "Bearer wrong"}, timeout=10
        )
        assert warned.status_code == 401
        service.stop()  # every line written
        assert [r for r in records(service) if r.get("logger") == "agentic_backend.access"] == []
    finally:
        service.stop()
