"""Where a query and its model calls are counted: one place that turns a finished query or call into its
metrics, GenAI metrics, exemplars, span attributes and ledger row, streamed or not, native or OpenAI.

The service opens a ``QueryRecord`` when a query starts (its span, its clock) and hands it back to
``Recorder.finish`` when it ends, whatever the outcome; each model call is opened and closed the same way
(``open_call`` / ``close_call``). The recorder takes every sink explicitly, so the query path reads as
admission, then the run, then this.
"""

from __future__ import annotations

import time
from contextvars import Token
from dataclasses import dataclass, field

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, NoOpTracer, Span, SpanKind, StatusCode, Tracer

from agentic_backend.agents.errors import BudgetExceeded, RateLimited
from agentic_backend.agents.registry import AgentType
from agentic_backend.billing.ledger import Ledger, LedgerEntry
from agentic_backend.billing.pricing import Price, nanos_to_dollars
from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Write
from agentic_backend.core.errors import AppError
from agentic_backend.core.ids import new_request_id
from agentic_backend.llm.base import Completion
from agentic_backend.llm.errors import ProviderError
from agentic_backend.metricstore.exemplars import Exemplars
from agentic_backend.monitoring.catalogue import (
    AGENT_DURATION,
    API_COST,
    GENAI_OTHER,
    LLM_DURATION,
    BuiltinMetrics,
)


@dataclass(slots=True)
class Usage:
    """What a query's model calls used, added up as each returns."""

    input_tokens: int = 0
    output_tokens: int = 0
    nanos: int = 0
    calls: int = 0
    cache_read_tokens: int = 0  # parts of input_tokens
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # a part of output_tokens
    upstream_seconds: float = 0.0  # in model calls and tools: what the service waited for, not added


@dataclass(slots=True)
class QueryRecord:
    """One query from its start to its ledger row: who asked, what it used, how it ended."""

    agent: AgentType
    provider: str  # the provider's name as the metrics label it
    key_id: int
    span: Span  # INVALID_SPAN when the service does not trace
    context_token: Token[Context] | None  # None when the service does not trace
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    usage: Usage = field(default_factory=Usage)
    status: str = "success"
    error_kind: str | None = None
    cached: bool = False
    writes: list[Write] = field(default_factory=list)  # written with the ledger's row (session messages)
    end_user: str | None = None
    tags: dict[str, str] | None = None

    def failed(self, exc: BaseException) -> None:
        """Classify how the query ended from what it raised."""
        self.status, self.error_kind = outcome(exc)


def outcome(exc: BaseException) -> tuple[str, str | None]:
    """A query's status and error kind from the exception that ended it."""
    if isinstance(exc, RateLimited | BudgetExceeded):
        return "rejected", None
    if isinstance(exc, ProviderError):
        return "error", exc.kind
    if isinstance(exc, AppError):  # a client's mistake (a session not there or not the key's) is refused
        return ("rejected", None) if exc.status_code < 500 else ("error", "internal")
    if isinstance(exc, anyio.get_cancelled_exc_class()):  # the client of a stream went away
        return "cancelled", "client_disconnect"
    if isinstance(exc, Exception):
        return "error", "internal"
    return "success", None  # KeyboardInterrupt and the like: the process ends, nothing to classify


def call_error_type(error: BaseException) -> str:
    """A failed model call's ``error.type``, the same on its span and its GenAI metric (low-cardinality, as
    the conventions ask): the provider's error kind, ``cancelled``, or ``_OTHER`` for anything else."""
    if isinstance(error, ProviderError):
        return error.kind
    return "cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else GENAI_OTHER


class Recorder:
    def __init__(
        self,
        metrics: BuiltinMetrics,
        ledger: Ledger,
        clock: Clock,
        *,
        models: frozenset[str],
        tracer: Tracer | None = None,
        exemplars: Exemplars | None = None,
    ) -> None:
        self.metrics = metrics
        self._ledger = ledger
        self._clock = clock
        self._models = models  # what a provider's answering model may be called in a label
        self._tracer: Tracer = tracer or NoOpTracer()
        # Without tracing no span is started, attached or given attributes: a no-op tracer's spans still
        # cost a context lookup each, and the attributes' dictionaries are built for nothing (1.2 % of a
        # chat completion's CPU at 16 connections, cProfile).
        self._tracing = not isinstance(self._tracer, NoOpTracer)
        self._exemplars = exemplars

    @property
    def tracer(self) -> Tracer:
        return self._tracer

    # -- the query --------------------------------------------------------------------------------------

    def start(self, agent: AgentType, provider: str, key_id: int) -> QueryRecord:
        """Open the query's span (the GenAI conventions' agent span, named after a known agent type only,
        so span names stay few) and make it the current one for the calls and tools beneath it."""
        request_id = new_request_id()
        if not self._tracing:
            return QueryRecord(agent, provider, key_id, INVALID_SPAN, None, request_id=request_id)
        span = self._tracer.start_span(
            f"invoke_agent {agent.name}",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent.name,
                "gen_ai.provider.name": agent.provider,
                "gen_ai.request.model": agent.model,
                "agentic_backend.request_id": request_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return QueryRecord(agent, provider, key_id, span, token, request_id=request_id)

    async def finish(self, record: QueryRecord) -> None:
        """Count the ended query: its metrics, its span, then its ledger row, and the tokens and cost once
        the ledger has the row, so that the metrics equal the ledger even when its commit fails (the spend
        row has the cost: the provider was paid)."""
        seconds = time.perf_counter() - record.started
        agent, usage, metrics = record.agent, record.usage, self.metrics
        metrics.agent_queries.labels(agent.name, record.status).inc()
        if record.status != "rejected":
            if metrics.genai is not None:
                labels = ("invoke_agent", agent.provider, agent.name, agent.model)
                metrics.genai.server_duration.labels(*labels, record.error_kind or "").observe(seconds)
            metrics.agent_duration.labels(agent.name).observe(seconds)
            if self._exemplars is not None:
                self._exemplars.observe(AGENT_DURATION, (agent.name,), seconds)
            metrics.agent_steps.labels(agent.name).observe(float(usage.calls))
        entry = LedgerEntry(
            request_id=record.request_id,
            key_id=record.key_id,
            agent_type=agent.name,
            provider=agent.provider,
            model=agent.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_nanodollars=usage.nanos,
            cached=record.cached,
            status=record.status,
            error_kind=record.error_kind,
            duration_seconds=seconds,
            created_at=self._clock.now(),
            trace_id=_trace_id(record.span),
            end_user=record.end_user,
            tags=record.tags,
        )
        if record.context_token is not None:
            self._end_query_span(record, record.context_token)
        await self._ledger.record(entry, also=record.writes)
        if usage.calls:
            cost = nanos_to_dollars(usage.nanos)
            for kind, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
                ("reasoning", usage.reasoning_tokens),
            ):
                if count or kind in ("input", "output"):
                    metrics.api_tokens.labels(record.provider, agent.model, kind).inc(count)
            metrics.api_cost.labels(record.provider, agent.model).inc(cost)
            if self._exemplars is not None:
                self._exemplars.observe(API_COST, (record.provider, agent.model), cost)

    @staticmethod
    def _end_query_span(record: QueryRecord, token: Token[Context]) -> None:
        span, usage = record.span, record.usage
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "agentic_backend.cost_usd": nanos_to_dollars(usage.nanos),
                "agentic_backend.cached": record.cached,
                "agentic_backend.status": record.status,
            }
        )
        if record.error_kind is not None:
            span.set_attribute("error.type", record.error_kind)
            span.set_status(StatusCode.ERROR, record.error_kind)
        span.end()
        otel_context.detach(token)

    def cache_hit(self, agent: AgentType, saved_nanos: int) -> None:
        """What the cached answer would have cost again."""
        self.metrics.cache_saved.labels(agent.provider, agent.model).inc(nanos_to_dollars(saved_nanos))

    def overhead(self, agent_type: str, seconds: float) -> None:
        """What the service added to a query beyond its model calls and tools (the routes measure it)."""
        self.metrics.agent_overhead.labels(agent_type).observe(max(0.0, seconds))

    def answer_streamed(self, agent: AgentType, first_token: float, per_token: float | None) -> None:
        """A streamed answer's timings as its client received them (tool steps included in the first)."""
        metrics, genai = self.metrics, self.metrics.genai
        labels = ("invoke_agent", agent.provider, agent.name, agent.model)
        metrics.agent_ttft.labels(agent.name).observe(first_token)
        if genai is not None:
            genai.server_ttft.labels(*labels).observe(first_token)
        if per_token is not None:
            metrics.agent_tpot.labels(agent.name).observe(per_token)
            if genai is not None:
                genai.server_tpot.labels(*labels).observe(per_token)

    # -- the model calls and tools ------------------------------------------------------------------

    def open_call(self, agent: AgentType, provider: str, max_tokens: int) -> Span | None:
        """The model call's span (None when the service does not trace)."""
        if not self._tracing:
            return None
        return self._tracer.start_span(
            f"chat {agent.model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": agent.model,
                "gen_ai.request.max_tokens": max_tokens,
            },
        )

    def close_call(
        self,
        record: QueryRecord,
        span: Span | None,
        completion: Completion | None,
        price: Price | None,
        seconds: float,
        first_token: float | None,
        error: BaseException | None,
    ) -> None:
        """Count one model call: its span, GenAI metrics, timings, and its usage in the query's."""
        agent, provider, metrics = record.agent, record.provider, self.metrics
        record.usage.upstream_seconds += seconds
        cost = price.nanodollars if price is not None else 0
        if span is not None:
            _end_call_span(span, agent.model, completion, cost, error)
        if metrics.genai is not None:
            self._genai_call(agent, provider, completion, seconds, error)
        if completion is not None and first_token is not None:
            metrics.llm_ttft.labels(provider, agent.model).observe(first_token)
            if completion.output_tokens > 1:
                per_token = (seconds - first_token) / (completion.output_tokens - 1)
                metrics.llm_tpot.labels(provider, agent.model).observe(per_token)
        if completion is None or price is None:
            return
        usage = record.usage
        usage.calls += 1
        usage.input_tokens += completion.input_tokens
        usage.output_tokens += completion.output_tokens
        usage.cache_read_tokens += completion.cache_read_tokens
        usage.cache_write_tokens += completion.cache_write_tokens
        usage.reasoning_tokens += completion.reasoning_tokens
        usage.nanos += cost
        metrics.llm_duration.labels(provider, agent.model).observe(seconds)
        if self._exemplars is not None:
            self._exemplars.observe(LLM_DURATION, (provider, agent.model), seconds)
        if not price.priced:
            metrics.api_unpriced_calls.labels(provider, agent.model).inc()

    def _genai_call(
        self,
        agent: AgentType,
        provider: str,
        completion: Completion | None,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """One model call in the GenAI semantic conventions' metrics."""
        genai = self.metrics.genai
        assert genai is not None
        answered_by = completion.model if completion is not None else None
        if answered_by is None:
            answered_by = agent.model
        elif answered_by not in self._models:  # the provider's string: bounded to the configured models
            answered_by = GENAI_OTHER
        labels = ("chat", provider, agent.model, answered_by)
        error_type = call_error_type(error) if error is not None else ""
        genai.client_duration.labels(*labels, error_type).observe(seconds)
        if completion is not None:
            genai.client_tokens.labels(*labels, "input").observe(float(completion.input_tokens))
            genai.client_tokens.labels(*labels, "output").observe(float(completion.output_tokens))

    def call_failed(self, record: QueryRecord, kind: str) -> None:
        self.metrics.llm_errors.labels(record.provider, record.agent.model, kind).inc()

    def tool(self, record: QueryRecord, tool: str, ok: bool, seconds: float) -> None:
        record.usage.upstream_seconds += seconds
        self.metrics.agent_tool_calls.labels(record.agent.name, tool, "ok" if ok else "error").inc()


def _end_call_span(
    span: Span, model: str, completion: Completion | None, cost: int, error: BaseException | None
) -> None:
    """The GenAI conventions' attributes of a model call's span: usage, finish reason, cost, error."""
    if completion is not None:
        span.set_attributes(
            {
                "gen_ai.response.model": completion.model or model,
                "gen_ai.usage.input_tokens": completion.input_tokens,
                "gen_ai.usage.output_tokens": completion.output_tokens,
                "gen_ai.response.finish_reasons": ["tool_calls" if completion.tool_calls else "stop"],
                "agentic_backend.cost_usd": nanos_to_dollars(cost),
            }
        )
    if error is not None:
        kind = call_error_type(error)
        span.set_attribute("error.type", kind)  # as the call's metric has it, so exemplars match
        if not isinstance(error, ProviderError):
            span.record_exception(error)  # what it was: exception.type, message and stack, on the span only
        span.set_status(StatusCode.ERROR, kind)
    span.end()


def _trace_id(span: Span) -> str | None:
    """The span's trace id as W3C writes it, or None when the service does not trace."""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
