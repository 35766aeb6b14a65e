"""A failed model call says the same ``error.type`` on its span and on its GenAI metric, so that an exemplar
leads to a trace of the same kind of failure; the span alone also records what the exception was."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentic_backend.agents.recorder import _end_call_span, call_error_type
from agentic_backend.llm.errors import ProviderError, ProviderRateLimited, ProviderTimeout


@pytest.mark.parametrize(
    ("error", "expected", "recorded"),
    [
        (ProviderRateLimited("slow down"), "rate_limit", False),
        (ProviderTimeout("late"), "timeout", False),
        (ProviderError("broken"), "server", False),
        (asyncio.CancelledError(), "cancelled", True),
        (KeyError("choices"), "_OTHER", True),
        (ValueError("bad JSON from the provider"), "_OTHER", True),
    ],
)
async def test_span_and_metric_share_the_error_type(
    error: BaseException, expected: str, recorded: bool
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("chat gpt-4o-mini")
    _end_call_span(span, "gpt-4o-mini", None, 0, error)
    (finished,) = exporter.get_finished_spans()
    assert call_error_type(error) == expected  # what the metric's error_type label is given
    assert finished.attributes is not None
    assert finished.attributes["error.type"] == expected
    assert finished.status.status_code is StatusCode.ERROR
    events = [e for e in finished.events if e.name == "exception"]
    assert bool(events) is recorded
    if recorded:
        assert events[0].attributes is not None
        assert str(events[0].attributes["exception.type"]).endswith(type(error).__name__)
