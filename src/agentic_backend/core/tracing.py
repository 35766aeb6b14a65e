"""Traces through the OpenTelemetry SDK, configured by the standard environment variables.

Tracing is on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and
neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise); the SDK itself reads
the rest: ``OTEL_SERVICE_NAME`` (default ``agentic-backend``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*``.
Spans go out over OTLP/HTTP with protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``, the default);
another protocol is refused at start-up rather than silently not exported.

Each request is a server span (FastAPI's instrumentation, named by the route template), continuing a
caller's W3C ``traceparent``; the answer carries ``X-Trace-ID``. Inside it, per the GenAI semantic
conventions: ``invoke_agent {agent}``, ``chat {model}`` for each model call (tokens, cost, finish reason)
and ``execute_tool {tool}``. Without the variables nothing of this is installed: the tracer is the API's
no-op one and no middleware is added (``bench/tracing.py`` measures both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACE_ID_HEADER = b"x-trace-id"
_INSTRUMENTATION = "agentic_backend"


class TracingConfigError(ValueError):
    """The OpenTelemetry variables ask for something this service cannot export."""


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def check_tracing_config(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse what cannot be exported (``serve`` checks it before starting any worker)."""
    if not tracing_requested(environ):
        return
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip() or "http/protobuf"
    if protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: this service exports traces over OTLP/HTTP with "
            "protobuf only; set it to 'http/protobuf' (collectors, Tempo and Jaeger take it on port 4318)."
        )


class Tracing:
    """The tracer provider of one app (not the global one: tests build many apps in one process)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.provider: trace.TracerProvider | None = None
        self.tracer: Tracer = NoOpTracer()
        if not tracing_requested(environ):
            return
        check_tracing_config(environ)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = environ.get("OTEL_SERVICE_NAME") or "agentic-backend"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))  # sampler: from env
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.provider = provider
        self.tracer = provider.get_tracer(_INSTRUMENTATION)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        """Export what is pending (the batch processor's queue) and stop."""
        if self.provider is not None:
            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


class TraceIdMiddleware:
    """Says the trace id of each answer in ``X-Trace-ID`` (inside the server span, when tracing is on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context = trace.get_current_span().get_span_context()
                if context.is_valid:
                    headers = list(message.get("headers", []))
                    headers.append((TRACE_ID_HEADER, format(context.trace_id, "032x").encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_trace_id)
