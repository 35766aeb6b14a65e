"""Traces over OTLP/HTTP to a receiver the test starts, configured only by the standard OpenTelemetry
variables: the request's server span continues the caller's traceparent, and holds invoke_agent, chat per
model call and execute_tool per tool call, with the GenAI conventions' attributes; the answer says the
trace id. Without the variables, nothing is exported and no trace id is sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.integration.harness import Prometheus, Service, free_port, scrape_config, wait_until
from tests.integration.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT, INTERNAL = 2, 3, 1  # the protobuf's SpanKind numbers


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.stop()


def test_a_query_is_one_trace_from_the_callers_span_to_each_model_and_tool_call(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "agents-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    service = Service(tmp_path, env=env)
    try:
        traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        response = httpx.post(
            f"{service.url}/api/v1/agents/calculator/query",
            json={"query": "what is 12*(3+4)?"},
            headers={**service.headers, "traceparent": traceparent},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-trace-id"] == CALLER_TRACE
        answer = response.json()

        def trace() -> list[ReceivedSpan]:
            return [s for s in receiver.spans if s.trace_id == CALLER_TRACE]

        wait_until(
            lambda: any(s.name.startswith("POST ") for s in trace()), timeout=15, what="the server span"
        )
        spans = trace()
        print("\n".join(f"{s.name} {s.span_id} <- {s.parent_span_id}" for s in spans))
        server = next(s for s in spans if s.name == "POST /api/v1/agents/{agent_type}/query")
        assert server.parent_span_id == CALLER_SPAN  # the caller's trace is continued
        assert server.kind == SERVER
        assert server.service_name == "agents-under-test"
        agent = next(s for s in spans if s.name == "invoke_agent calculator")
        assert agent.parent_span_id == server.span_id
        assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert agent.attributes["agentic_backend.request_id"] == answer["request_id"]
        assert agent.attributes["gen_ai.usage.output_tokens"] == answer["tokens"]["output"]
        assert agent.attributes["agentic_backend.cost_usd"] == pytest.approx(answer["cost_dollars"])
        chats = [s for s in spans if s.name == "chat gpt-4o-mini"]
        assert len(chats) == 2  # the tool call, then the answer
        assert {c.parent_span_id for c in chats} == {agent.span_id}
        assert all(c.kind == CLIENT for c in chats)
        assert [c.attributes["gen_ai.response.finish_reasons"] for c in chats] in (
            [["tool_calls"], ["stop"]],
            [["stop"], ["tool_calls"]],
        )
        assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats) == answer["tokens"]["input"]
        assert all(c.attributes["gen_ai.provider.name"] == "sim" for c in chats)
        assert all(c.attributes["agentic_backend.cost_usd"] > 0 for c in chats)
        tool = next(s for s in spans if s.name == "execute_tool calculate")
        assert tool.parent_span_id == agent.span_id
        assert tool.kind == INTERNAL
        assert tool.attributes["gen_ai.tool.name"] == "calculate"

        # A request without a traceparent starts a trace of its own, and a failed call marks its span.
        failed = httpx.post(
            f"{service.url}/api/v1/agents/assistant/query",
            json={"query": "#fail:server"},
            headers=service.headers,
            timeout=30,
        )
        assert failed.status_code == 502
        own = failed.headers["x-trace-id"]
        assert own != CALLER_TRACE
        wait_until(
            lambda: any(s.trace_id == own and s.name == "chat gpt-4o-mini" for s in receiver.spans),
            timeout=15,
            what="the failed call's span",
        )
        call = next(s for s in receiver.spans if s.trace_id == own and s.name == "chat gpt-4o-mini")
        assert call.attributes["error.type"] == "server"
        assert call.status_code == 2  # STATUS_CODE_ERROR
        assert service.admin_key not in str(receiver.spans)  # no secret in any attribute
    finally:
        service.stop()


def test_without_the_variables_nothing_is_exported(tmp_path: Path, receiver: OtlpReceiver) -> None:
    service = Service(tmp_path, env={"OTEL_SERVICE_NAME": "not-exported"})
    try:
        response = httpx.post(
            f"{service.url}/api/v1/agents/assistant/query",
            json={"query": "hi"},
            headers={**service.headers, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            timeout=30,
        )
        assert response.status_code == 200
        assert "x-trace-id" not in response.headers
    finally:
        service.stop()
    assert receiver.requests == 0


def test_an_unsupported_protocol_is_refused_at_start_up(tmp_path: Path, receiver: OtlpReceiver) -> None:
    env = {
        **os.environ,
        "AGENTIC_DATA_DIR": str(tmp_path / "data"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "agentic_backend", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "http/protobuf" in result.stderr
    assert time.monotonic() - started < 20  # before any worker starts


def test_latency_buckets_and_cost_carry_exemplars_that_prometheus_stores(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    service = Service(tmp_path / "service", env=env)
    prometheus = Prometheus(
        tmp_path / "prometheus",
        scrape_config(service.url.removeprefix("http://")),
        extra_args=["--enable-feature=exemplar-storage"],
    )
    try:
        traces = set()
        for n in range(3):
            answer = httpx.post(
                f"{service.url}/api/v1/agents/calculator/query",
                json={"query": f"what is {n}*7?"},
                headers=service.headers,
                timeout=30,
            )
            assert answer.status_code == 200
            traces.add(answer.headers["x-trace-id"])
        # OpenMetrics: the exemplars after their samples, valid for the strict parser.
        text = httpx.get(
            f"{service.url}/api/v1/monitoring/metrics",
            headers={"accept": "application/openmetrics-text"},
            timeout=10,
        ).text
        found: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.exemplar is not None:
                    found.setdefault(sample.name, set()).add(sample.exemplar.labels["trace_id"])
        for name in (
            "http_request_duration_seconds_bucket",
            "agent_query_duration_seconds_bucket",
            "llm_request_duration_seconds_bucket",
            "api_cost_dollars_total",
        ):
            assert found.get(name, set()) & traces, (name, found)
        plain = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
        assert "trace_id" not in plain  # the text format has no exemplars

        # A real Prometheus with exemplar storage returns them.
        def stored() -> list[dict[str, object]] | None:
            now = time.time()
            response = httpx.get(
                f"{prometheus.url}/api/v1/query_exemplars",
                params={"query": "agent_query_duration_seconds_bucket", "start": now - 300, "end": now},
                timeout=10,
            ).json()
            data: list[dict[str, object]] = response.get("data") or []
            return data if any(e for series in data for e in series["exemplars"]) else None  # type: ignore[union-attr]

        data = wait_until(stored, timeout=30, what="exemplars in Prometheus")
        ids = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}  # type: ignore[index, union-attr]
        print(f"Prometheus holds exemplars of traces {sorted(ids)}")
        assert ids & traces
    finally:
        prometheus.stop()
        service.stop()
