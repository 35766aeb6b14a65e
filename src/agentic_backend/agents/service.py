"""One agent query, end to end: rate limit, budget, session history, cache, the tool loop, and the
accounting of every model call in metrics, the ledger and the response (which therefore agree)."""

from __future__ import annotations

import json
import time
import uuid
from contextvars import Token
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Span, SpanKind, StatusCode, Tracer

from agentic_backend.agents.errors import BudgetExceeded, ProviderNotConfigured, RateLimited, UnknownAgentType
from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.runtime import RunEvents, RunResult, run_agent
from agentic_backend.agents.schemas import QueryRequest, QueryResponse, StepPublic, TokenCounts
from agentic_backend.billing.budget import Budgets, Reservation, call_bound, input_token_bound, month_of
from agentic_backend.billing.ledger import Ledger, LedgerEntry
from agentic_backend.billing.pricing import NANOS_PER_DOLLAR, Pricer, nanos_to_dollars
from agentic_backend.billing.ratelimit import Windows
from agentic_backend.cache.service import ResponseCache, cache_key
from agentic_backend.core.clock import Clock
from agentic_backend.core.config import Settings
from agentic_backend.core.db import Write
from agentic_backend.core.errors import AppError
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Completion, Message, Provider, ToolSpec
from agentic_backend.llm.errors import ProviderError
from agentic_backend.metricstore.exemplars import Exemplars
from agentic_backend.monitoring.catalogue import (
    AGENT_DURATION,
    API_COST,
    GENAI_OTHER,
    LLM_DURATION,
    BuiltinMetrics,
    GenAIMetrics,
)
from agentic_backend.sessions.service import SessionService


@dataclass(frozen=True, slots=True)
class Limits:
    default_monthly_budget_dollars: float | None
    default_rpm_limit: int | None
    query_cost_estimate_dollars: float
    default_tpm_limit: int | None = None
    reservation_grace_seconds: float = 30.0
    cache_per_key: bool = True  # AGENTIC_CACHE_SCOPE=key

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            default_monthly_budget_dollars=settings.default_monthly_budget_dollars,
            default_rpm_limit=settings.default_rpm_limit,
            default_tpm_limit=settings.default_tpm_limit,
            query_cost_estimate_dollars=settings.query_cost_estimate_dollars,
            reservation_grace_seconds=settings.budget_reservation_grace_seconds,
            cache_per_key=settings.cache_scope == "key",
        )


class QueryEvents(RunEvents, Protocol):
    async def start(self, request_id: str, agent: AgentType) -> None:
        """The query is admitted (rate, budget, session and cache checked): its stream may begin."""
        ...


@dataclass(slots=True)
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    nanos: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)


class AgentService:
    def __init__(
        self,
        agents: dict[str, AgentType],
        providers: dict[str, Provider],
        *,
        pricer: Pricer,
        cache: ResponseCache,
        budgets: Budgets,
        limiter: Windows,
        sessions: SessionService,
        ledger: Ledger,
        metrics: BuiltinMetrics,
        limits: Limits,
        clock: Clock,
        tracer: Tracer | None = None,
        exemplars: Exemplars | None = None,
    ) -> None:
        self.agents = agents
        self._providers = providers
        self._pricer = pricer
        self._cache = cache
        self._budgets = budgets
        self._limiter = limiter
        self._sessions = sessions
        self._ledger = ledger
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        self._tracer: Tracer = tracer or NoOpTracer()
        self._exemplars = exemplars
        self._models = frozenset(agent.model for agent in agents.values())
        for agent in agents.values():  # dashboards see every agent type from start-up
            provider = providers.get(agent.provider)
            metrics.expect_agent(agent.name, provider.name if provider else None, agent.model)

    @staticmethod
    def _end_span(
        span: Span, token: Token[Context], status: str, error_kind: str | None, usage: _Usage, cached: bool
    ) -> None:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "agentic_backend.cost_usd": nanos_to_dollars(usage.nanos),
                "agentic_backend.cached": cached,
                "agentic_backend.status": status,
            }
        )
        if error_kind is not None:
            span.set_attribute("error.type", error_kind)
            span.set_status(StatusCode.ERROR, error_kind)
        span.end()
        otel_context.detach(token)

    def _genai_call(
        self,
        genai: GenAIMetrics,
        agent: AgentType,
        provider: str,
        completion: Completion | None,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """One model call in the GenAI semantic conventions' metrics."""
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

    def agent(self, name: str) -> AgentType:
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgentType(f"no agent type {name!r}; available: {', '.join(sorted(self.agents))}.")
        return agent

    @property
    def metrics(self) -> BuiltinMetrics:
        """The families this service records (a streamed answer records its timings into them too)."""
        return self._metrics

    async def query(
        self,
        principal: Principal,
        agent_type: str,
        request: QueryRequest,
        events: QueryEvents | None = None,
        conversation: list[Message] | None = None,
    ) -> QueryResponse:
        """Answer ``request``; with ``events``, streamed: ``events.start`` once the query is admitted (so
        a refusal is still an HTTP error), then its text and steps as they come. ``conversation`` is the
        history a caller sends along (the OpenAI-compatible face), in place of a session's."""
        agent = self.agent(agent_type)
        provider = self._providers.get(agent.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"agent type {agent.name!r} uses provider {agent.provider!r}, which has no credentials "
                "configured "
                f"(set AGENTIC_{agent.provider.upper()}_API_KEY)."
            )
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        usage = _Usage()
        status, error_kind, cached = "success", None, False
        session_writes: list[Write] = []
        # The GenAI conventions' agent span (named after a known agent type only: span names stay few).
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
        span_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self._check_rate(principal)
            account = _Account(self, agent, provider, principal, request_id, usage)
            await account.check()
            session_id = str(request.session_id) if request.session_id else None
            history = await self._sessions.history(principal, session_id) if session_id else []
            history += conversation or []
            scope = str(principal.key_id) if self._limits.cache_per_key else ""
            stateless = session_id is None and not conversation  # the answer depends on the query alone
            key = cache_key(agent.name, agent.model, request.query, scope) if stateless else None
            if key is not None:
                hit = await self._cache.get(key)
                if hit is not None:
                    cached = True
                    answer = self._from_cache(hit, agent, request_id)
                    if events is not None:
                        await events.start(request_id, agent)
                        await events.text(answer.answer)
                    return answer
            if events is not None:
                await events.start(request_id, agent)
            result = await self._run(agent, provider, request.query, history, account, events)
            if session_id is not None:  # written with the ledger's row, in one transaction
                session_writes = self._sessions.append_writes(
                    principal, session_id, [("user", request.query), ("assistant", result.answer)]
                )
            response = self._response(agent, request_id, result, usage, session_id)
            if key is not None and result.stop_reason == "answer":
                await self._cache.set(
                    key, json.dumps({"response": response.model_dump(), "nanos": usage.nanos}).encode()
                )
            return response
        except (RateLimited, BudgetExceeded):
            status = "rejected"
            raise
        except ProviderError as exc:
            status, error_kind = "error", exc.kind
            raise
        except AppError as exc:
            # A client's mistake (a session that is not there or not the key's) is refused, not failed.
            status, error_kind = ("rejected", None) if exc.status_code < 500 else ("error", "internal")
            raise
        except Exception:
            status, error_kind = "error", "internal"
            raise
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):  # the client of a stream went away
                status, error_kind = "cancelled", "client_disconnect"
            raise
        finally:
            seconds = time.perf_counter() - started
            self._metrics.agent_queries.labels(agent.name, status).inc()
            genai = self._metrics.genai
            if genai is not None and status != "rejected":
                labels = ("invoke_agent", agent.provider, agent.name, agent.model)
                genai.server_duration.labels(*labels, error_kind or "").observe(seconds)
            if status != "rejected":
                self._metrics.agent_duration.labels(agent.name).observe(seconds)
                if self._exemplars is not None:
                    self._exemplars.observe(AGENT_DURATION, (agent.name,), seconds)
                self._metrics.agent_steps.labels(agent.name).observe(float(usage.calls))
            entry = LedgerEntry(
                request_id=request_id,
                key_id=principal.key_id,
                agent_type=agent.name,
                provider=agent.provider,
                model=agent.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_nanodollars=usage.nanos,
                cached=cached,
                status=status,
                error_kind=error_kind,
                duration_seconds=seconds,
                created_at=self._clock.now(),
                trace_id=_trace_id(span),
            )
            self._end_span(span, span_token, status, error_kind, usage, cached)
            await self._ledger.record(entry, also=session_writes)
            # Counted once the ledger has the row, so that the metrics equal the ledger even when its
            # commit fails (the spend row has the cost: the provider was paid).
            if usage.calls:
                metrics = self._metrics
                metrics.api_tokens.labels(provider.name, agent.model, "input").inc(usage.input_tokens)
                metrics.api_tokens.labels(provider.name, agent.model, "output").inc(usage.output_tokens)
                metrics.api_cost.labels(provider.name, agent.model).inc(nanos_to_dollars(usage.nanos))
                if self._exemplars is not None:
                    self._exemplars.observe(
                        API_COST, (provider.name, agent.model), nanos_to_dollars(usage.nanos)
                    )

    async def _check_rate(self, principal: Principal) -> None:
        limit = principal.rpm_limit or self._limits.default_rpm_limit
        if limit is None:
            return
        window = await self._limiter.hit(f"rpm:{principal.key_id}", limit, 60)
        if not window.allowed:
            raise RateLimited(
                f"This key may send {limit} queries per minute; try again in {window.reset_seconds} s.",
                headers=window.headers(),
            )

    def _budget_nanos(self, principal: Principal) -> int | None:
        budget = principal.monthly_budget_dollars
        if budget is None:
            budget = self._limits.default_monthly_budget_dollars
        return None if budget is None else round(budget * NANOS_PER_DOLLAR)

    async def _run(
        self,
        agent: AgentType,
        provider: Provider,
        query: str,
        history: list[Message],
        account: _Account,
        events: QueryEvents | None,
    ) -> RunResult:
        metrics = self._metrics

        def on_tool(tool: str, ok: bool) -> None:
            metrics.agent_tool_calls.labels(agent.name, tool, "ok" if ok else "error").inc()

        deadline = time.monotonic() + agent.timeout_seconds
        try:
            return await run_agent(
                agent,
                provider,
                query,
                history,
                deadline=deadline,
                account=account,
                on_tool=on_tool,
                events=events,
                tracer=self._tracer,
            )
        except ProviderError as exc:
            metrics.llm_errors.labels(provider.name, agent.model, exc.kind).inc()
            raise

    def _response(
        self, agent: AgentType, request_id: str, result: RunResult, usage: _Usage, session_id: str | None
    ) -> QueryResponse:
        return QueryResponse(
            request_id=request_id,
            agent_type=agent.name,
            provider=agent.provider,
            model=agent.model,
            answer=result.answer,
            stop_reason=result.stop_reason,
            steps=[StepPublic.model_validate(step) for step in result.steps],
            tokens=TokenCounts(input=usage.input_tokens, output=usage.output_tokens),
            cost_dollars=nanos_to_dollars(usage.nanos),
            cached=False,
            session_id=session_id,
        )

    def _from_cache(self, payload: bytes, agent: AgentType, request_id: str) -> QueryResponse:
        stored = json.loads(payload)
        self._metrics.cache_saved.labels(agent.provider, agent.model).inc(
            nanos_to_dollars(int(stored["nanos"]))
        )
        response = QueryResponse.model_validate(stored["response"])
        return response.model_copy(
            update={
                "request_id": request_id,
                "cached": True,
                "stop_reason": "cache",
                "steps": [],
                "tokens": TokenCounts(input=0, output=0),
                "cost_dollars": 0.0,
            }
        )


class _Account:
    """One query's model calls against its key's budget: each call reserves the most it can cost before it
    runs and settles what it cost after it (billing/budget.py); ``usage`` adds up what the calls used."""

    def __init__(
        self,
        service: AgentService,
        agent: AgentType,
        provider: Provider,
        principal: Principal,
        request_id: str,
        usage: _Usage,
    ) -> None:
        self._service = service
        self._agent = agent
        self._provider = provider
        self._principal = principal
        self._request_id = request_id
        self._usage = usage
        self._budget = service._budget_nanos(principal)
        self._month = month_of(service._clock.now())
        self._floor = round(service._limits.query_cost_estimate_dollars * NANOS_PER_DOLLAR)
        self._reservation: Reservation | None = None
        self._tpm = principal.tpm_limit or service._limits.default_tpm_limit
        self._tokens_window = f"tpm:{principal.key_id}"
        self._tokens_held: str | None = None  # the handle of this call's tokens in the key's window
        self._span: Span | None = None  # the model call's span, from open to close

    async def check(self) -> None:
        """Refuse the query at once if its key's budget is already spent."""
        if self._budget is None:
            return
        if await self._service._budgets.spent(self._principal.key_id, self._month) >= self._budget:
            raise self._exceeded()

    def _exceeded(self) -> BudgetExceeded:
        assert self._budget is not None
        return BudgetExceeded(
            f"This key's monthly budget of ${nanos_to_dollars(self._budget):.2f} is spent for {self._month} "
            "(or held by its queries in flight); an admin can raise it with PUT /api/v1/keys/{id}/limits."
        )

    async def open(self, messages: list[Message], tools: list[ToolSpec]) -> bool:
        if not await self._admit(messages, tools):
            return False
        agent = self._agent
        self._span = self._service._tracer.start_span(
            f"chat {agent.model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self._provider.name,
                "gen_ai.request.model": agent.model,
                "gen_ai.request.max_tokens": agent.max_output_tokens,
            },
        )
        return True

    async def _admit(self, messages: list[Message], tools: list[ToolSpec]) -> bool:
        """Hold the call's tokens and reserve its most cost; whether it may run."""
        service, agent = self._service, self._agent
        tokens = input_token_bound(messages, tools)
        if self._tpm is not None and not await self._hold_tokens(tokens + agent.max_output_tokens):
            return False
        if self._budget is None:
            return True
        bound = call_bound(service._pricer, agent.model, tokens, agent.max_output_tokens)
        self._reservation = await service._budgets.reserve(
            self._principal.key_id,
            self._month,
            self._budget,
            max(bound, self._floor),
            request_id=self._request_id,
            now=service._clock.now(),
            # Past the query's deadline and a grace, a sweep may release it: its worker died mid-call.
            lifetime=timedelta(seconds=agent.timeout_seconds + service._limits.reservation_grace_seconds),
        )
        if self._reservation is None:
            await self._release_tokens(0)
            if self._usage.calls == 0:
                raise self._exceeded()
            return False  # answered with what the earlier calls found (stop_reason "budget")
        return True

    async def _hold_tokens(self, most: int) -> bool:
        """Hold the most tokens this call can use in the key's tokens-per-minute window (the same bound
        as its budget reservation): calls in flight never pass the limit but for one let through alone."""
        assert self._tpm is not None
        window, self._tokens_held = await self._service._limiter.reserve(
            self._tokens_window, self._tpm, 60, most
        )
        if self._tokens_held is not None:
            return True
        if self._usage.calls == 0:
            raise RateLimited(
                f"This key may use {self._tpm} tokens per minute; try again in {window.reset_seconds} s.",
                headers=window.headers(),
            )
        return False

    async def _release_tokens(self, used: int) -> None:
        handle, self._tokens_held = self._tokens_held, None
        if handle is not None:
            await self._service._limiter.settle(self._tokens_window, handle, used)

    async def close(
        self,
        completion: Completion | None,
        seconds: float,
        first_token: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        usage, agent, metrics = self._usage, self._agent, self._service._metrics
        provider = self._provider.name
        price = (
            self._service._pricer.price(agent.model, completion.input_tokens, completion.output_tokens)
            if completion is not None
            else None
        )
        cost = price.nanodollars if price is not None else 0
        span, self._span = self._span, None
        if span is not None:
            _end_call_span(span, agent.model, completion, cost, error)
        if metrics.genai is not None:
            self._service._genai_call(metrics.genai, agent, provider, completion, seconds, error)
        if completion is not None and first_token is not None:
            metrics.llm_ttft.labels(provider, agent.model).observe(first_token)
            if completion.output_tokens > 1:
                per_token = (seconds - first_token) / (completion.output_tokens - 1)
                metrics.llm_tpot.labels(provider, agent.model).observe(per_token)
        if completion is not None and price is not None:
            usage.calls += 1
            usage.input_tokens += completion.input_tokens
            usage.output_tokens += completion.output_tokens
            usage.nanos += cost
            metrics.llm_duration.labels(provider, agent.model).observe(seconds)
            if self._service._exemplars is not None:
                self._service._exemplars.observe(LLM_DURATION, (provider, agent.model), seconds)
            if not price.priced:
                metrics.api_unpriced_calls.labels(provider, agent.model).inc()
        used = completion.input_tokens + completion.output_tokens if completion is not None else 0
        await self._release_tokens(used)
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            await self._service._budgets.settle(reservation, cost)


def call_error_type(error: BaseException) -> str:
    """A failed model call's ``error.type``, the same on its span and its GenAI metric (low-cardinality, as
    the conventions ask): the provider's error kind, ``cancelled``, or ``_OTHER`` for anything else."""
    if isinstance(error, ProviderError):
        return error.kind
    return "cancelled" if isinstance(error, anyio.get_cancelled_exc_class()) else GENAI_OTHER


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
