"""One agent query, end to end: rate limit, budget, session history, cache, the tool loop, and the
accounting of every model call in metrics, the ledger and the response (which therefore agree)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from agentic_backend.agents.errors import BudgetExceeded, RateLimited, UnknownAgentType
from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.runtime import RunResult, run_agent
from agentic_backend.agents.schemas import QueryRequest, QueryResponse, StepPublic, TokenCounts
from agentic_backend.billing.budget import Budgets, month_of
from agentic_backend.billing.ledger import Ledger, LedgerEntry, Settlement
from agentic_backend.billing.pricing import NANOS_PER_DOLLAR, Pricer, nanos_to_dollars
from agentic_backend.billing.ratelimit import RateLimiter
from agentic_backend.cache.service import ResponseCache, cache_key
from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Write
from agentic_backend.core.errors import ServiceUnavailable
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Completion, Message, Provider, ProviderError
from agentic_backend.monitoring.catalogue import BuiltinMetrics
from agentic_backend.sessions.service import SessionService


class ProviderNotConfigured(ServiceUnavailable):
    """The agent type's provider has no credentials configured (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Limits:
    default_monthly_budget_dollars: float | None
    default_rpm_limit: int | None
    query_cost_estimate_dollars: float


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
        limiter: RateLimiter,
        sessions: SessionService,
        ledger: Ledger,
        metrics: BuiltinMetrics,
        limits: Limits,
        clock: Clock,
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
        for agent in agents.values():  # dashboards see every agent type from start-up
            for status in ("success", "error", "rejected"):
                metrics.agent_queries.labels(agent.name, status)
            provider = providers.get(agent.provider)
            if provider is not None:
                # At zero from start-up: increase() over a range counts a counter's first increment only
                # if the series existed before it (Prometheus sees no rise in a series' first sample).
                metrics.api_cost.labels(provider.name, agent.model)
                for kind in ("input", "output"):
                    metrics.api_tokens.labels(provider.name, agent.model, kind)

    def agent(self, name: str) -> AgentType:
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgentType(f"no agent type {name!r}; available: {', '.join(sorted(self.agents))}.")
        return agent

    async def query(self, principal: Principal, agent_type: str, request: QueryRequest) -> QueryResponse:
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
        month = month_of(self._clock.now())
        estimate = round(self._limits.query_cost_estimate_dollars * NANOS_PER_DOLLAR)
        usage = _Usage()
        status, error_kind, cached, reserved = "success", None, False, False
        session_writes: list[Write] = []
        try:
            self._check_rate(principal)
            reserved = await self._reserve(principal, month, estimate)
            session_id = str(request.session_id) if request.session_id else None
            history = await self._sessions.history(principal, session_id) if session_id else []
            key = cache_key(agent.name, agent.model, request.query) if session_id is None else None
            if key is not None:
                hit = await self._cache.get(key)
                if hit is not None:
                    cached = True
                    return self._from_cache(hit, agent, request_id)
            result = await self._run(agent, provider, principal, month, request.query, history, usage)
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
        except Exception:
            status, error_kind = "error", "internal"
            raise
        finally:
            seconds = time.perf_counter() - started
            self._metrics.agent_queries.labels(agent.name, status).inc()
            if status != "rejected":
                self._metrics.agent_duration.labels(agent.name).observe(seconds)  # type: ignore[attr-defined]
                self._metrics.agent_steps.labels(agent.name).observe(float(usage.calls))  # type: ignore[attr-defined]
            await self._ledger.record(
                LedgerEntry(
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
                ),
                Settlement(month, released_nanodollars=estimate if reserved else 0),
                also=session_writes,
            )

    def _check_rate(self, principal: Principal) -> None:
        limit = principal.rpm_limit or self._limits.default_rpm_limit
        if limit is None:
            return
        retry = self._limiter.acquire(principal.key_id, limit)
        if retry is not None:
            raise RateLimited(
                f"This key may send {limit} queries per minute; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )

    def _budget_nanos(self, principal: Principal) -> int | None:
        budget = principal.monthly_budget_dollars
        if budget is None:
            budget = self._limits.default_monthly_budget_dollars
        return None if budget is None else round(budget * NANOS_PER_DOLLAR)

    async def _reserve(self, principal: Principal, month: str, estimate: int) -> bool:
        budget = self._budget_nanos(principal)
        if budget is None:
            return False
        if not await self._budgets.reserve(principal.key_id, month, budget, estimate):
            raise BudgetExceeded(
                f"This key's monthly budget of ${nanos_to_dollars(budget):.2f} is spent for {month}; "
                "an admin can raise it with PUT /api/v1/keys/{id}/limits."
            )
        return True

    async def _run(
        self,
        agent: AgentType,
        provider: Provider,
        principal: Principal,
        month: str,
        query: str,
        history: list[Message],
        usage: _Usage,
    ) -> RunResult:
        metrics = self._metrics
        budget = self._budget_nanos(principal)
        spent_before = await self._budgets.spent(principal.key_id, month) if budget is not None else 0

        async def on_call(completion: Completion, seconds: float) -> bool:
            price = self._pricer.price(agent.model, completion.input_tokens, completion.output_tokens)
            usage.calls += 1
            usage.input_tokens += completion.input_tokens
            usage.output_tokens += completion.output_tokens
            usage.nanos += price.nanodollars
            metrics.llm_duration.labels(provider.name, agent.model).observe(seconds)  # type: ignore[attr-defined]
            metrics.api_tokens.labels(provider.name, agent.model, "input").inc(completion.input_tokens)
            metrics.api_tokens.labels(provider.name, agent.model, "output").inc(completion.output_tokens)
            metrics.api_cost.labels(provider.name, agent.model).inc(nanos_to_dollars(price.nanodollars))
            if not price.priced:
                metrics.api_unpriced_calls.labels(provider.name, agent.model).inc()
            return budget is None or spent_before + usage.nanos < budget

        def on_tool(tool: str, ok: bool) -> None:
            metrics.agent_tool_calls.labels(agent.name, tool, "ok" if ok else "error").inc()

        deadline = time.monotonic() + agent.timeout_seconds
        try:
            return await run_agent(
                agent, provider, query, history, deadline=deadline, on_call=on_call, on_tool=on_tool
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
            steps=[
                StepPublic(
                    kind=s.kind,
                    name=s.name,
                    detail=s.detail,
                    input_tokens=s.input_tokens,
                    output_tokens=s.output_tokens,
                )
                for s in result.steps
            ],
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
