"""The recorder's spans: a query's and its model calls' when the service traces, none at all when it does
not (not even a no-op tracer's, which cost a context lookup each)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, NoOpTracer
from sqlalchemy import select

from agentic_backend import state
from agentic_backend.agents.recorder import Recorder
from agentic_backend.app import create_app
from agentic_backend.billing.models import UsageRecord
from agentic_backend.core.config import Settings
from tests.conftest import ClientFor


async def _trace_id(services: state.AppState, request_id: str) -> str | None:
    async with services.database.session() as session:
        query = select(UsageRecord.trace_id).where(UsageRecord.request_id == request_id)
        trace_id: str | None = (await session.execute(query)).scalar_one()
        return trace_id


class CountingNoOpTracer(NoOpTracer):
    def __init__(self) -> None:
        self.started = 0

    def start_span(self, *args: object, **kwargs: object) -> trace.Span:  # type: ignore[override]
        self.started += 1
        return super().start_span(*args, **kwargs)  # type: ignore[arg-type]


async def test_without_tracing_no_span_is_started_or_attached(
    settings: Settings, client_for: ClientFor
) -> None:
    app = create_app(settings)
    async with client_for(app):
        services = state.of(app)
        tracer = CountingNoOpTracer()
        recorder = Recorder(
            services.telemetry.metrics, services.ledger, services.clock, models=frozenset(), tracer=tracer
        )
        agent = services.agents.agent("assistant")
        before = trace.get_current_span()
        record = recorder.start(agent, "sim", 1)
        assert record.span is INVALID_SPAN
        assert record.context_token is None
        assert trace.get_current_span() is before
        assert recorder.open_call(agent, "sim", 100) is None
        await recorder.finish(record)
        assert tracer.started == 0
        assert trace.get_current_span() is before
        assert await _trace_id(services, record.request_id) is None


async def test_with_tracing_the_query_span_is_current_until_it_ends(
    settings: Settings, client_for: ClientFor
) -> None:
    app = create_app(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with client_for(app):
        services = state.of(app)
        recorder = Recorder(
            services.telemetry.metrics,
            services.ledger,
            services.clock,
            models=frozenset(),
            tracer=provider.get_tracer("t"),
        )
        agent = services.agents.agent("assistant")
        before = trace.get_current_span()
        record = recorder.start(agent, "sim", 1)
        assert record.context_token is not None
        assert trace.get_current_span() is record.span
        call = recorder.open_call(agent, "sim", 100)
        assert call is not None
        assert call.is_recording()
        recorder.close_call(record, call, None, None, 0.01, None, None)
        await recorder.finish(record)
        assert trace.get_current_span() is before
        names = sorted(span.name for span in exporter.get_finished_spans())
        assert names == ["chat " + agent.model, "invoke_agent assistant"]
        assert await _trace_id(services, record.request_id) == format(
            record.span.get_span_context().trace_id, "032x"
        )
