"""One agent query, end to end: rate limit, budget, session history, cache, the tool loop, and the
accounting of every model call in metrics, the ledger and the response (which therefore agree)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from opentelemetry.trace import Span
from pydantic import BaseModel

from agentic_backend.agents.errors import BudgetExceeded, ProviderNotConfigured, RateLimited, UnknownAgentType
from agentic_backend.agents.recorder import QueryRecord, Recorder
from agentic_backend.agents.registry import AgentType
from agentic_backend.agents.runtime import ASKED_NOTHING, QueryOptions, RunEvents, RunResult, run_agent
from agentic_backend.agents.schemas import (
    QueryRequest,
    QueryResponse,
    StepPublic,
    TokenCounts,
    ToolCallPublic,
)
from agentic_backend.billing.budget import Budgets, Reservation, call_bound, input_token_bound, month_of
from agentic_backend.billing.pricing import NANOS_PER_DOLLAR, Pricer, Tokens, dollars_text, nanos_to_dollars
from agentic_backend.billing.ratelimit import Windows
from agentic_backend.cache.service import ResponseCache, cache_key
from agentic_backend.core.clock import Clock
from agentic_backend.core.config import Settings
from agentic_backend.identity.schemas import Principal
from agentic_backend.llm.base import Completion, Message, Provider, ToolSpec
from agentic_backend.llm.errors import ProviderError
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
        recorder: Recorder,
        limits: Limits,
        clock: Clock,
    ) -> None:
        self.agents = agents
        self._providers = providers
        self._cache = cache
        self._limiter = limiter
        self._sessions = sessions
        self._recorder = recorder
        self._limits = limits
        self._billing = _Billing(pricer, budgets, limiter, recorder, limits, clock)
        for agent in agents.values():  # dashboards see every agent type from start-up
            provider = providers.get(agent.provider)
            recorder.metrics.expect_agent(agent.name, provider.name if provider else None, agent.model)

    def agent(self, name: str) -> AgentType:
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgentType(f"no agent type {name!r}; available: {', '.join(sorted(self.agents))}.")
        return agent

    @property
    def recorder(self) -> Recorder:
        """Where this service counts its queries (a streamed answer records its timings there too)."""
        return self._recorder

    async def query(
        self,
        principal: Principal,
        agent_type: str,
        request: QueryRequest,
        events: QueryEvents | None = None,
        conversation: list[Message] | None = None,
        options: QueryOptions = ASKED_NOTHING,
    ) -> QueryResponse:
        """Answer ``request``; with ``events``, streamed: ``events.start`` once the query is admitted (so
        a refusal is still an HTTP error), then its text and steps as they come. ``conversation`` is the
        history a caller sends along (the OpenAI-compatible face), in place of a session's; ``options``
        what it asks of the model calls (a cap on their output, sampling, a response format)."""
        agent = self.agent(agent_type)
        provider = self._provider(agent)
        record = self._recorder.start(agent, provider.name, principal.key_id)
        record.end_user, record.tags = options.end_user, options.tags
        try:
            account = _Account(self._billing, provider, principal, record)
            await self._admit(principal, account)
            asked = _Asked(request, conversation, options)
            return await self._answer(provider, principal, asked, record, account, events)
        except BaseException as exc:
            record.failed(exc)
            raise
        finally:
            await self._recorder.finish(record)

    def _provider(self, agent: AgentType) -> Provider:
        provider = self._providers.get(agent.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"agent type {agent.name!r} uses provider {agent.provider!r}, which has no credentials "
                f"configured (set AGENTIC_{agent.provider.upper()}_API_KEY)."
            )
        return provider

    async def _admit(self, principal: Principal, account: _Account) -> None:
        """Refuse the query at once if its key is over its rate or its budget is spent."""
        await self._check_rate(principal)
        await account.check()

    async def _answer(
        self,
        provider: Provider,
        principal: Principal,
        asked: _Asked,
        record: QueryRecord,
        account: _Account,
        events: QueryEvents | None,
    ) -> QueryResponse:
        """The admitted query: its history, the cache, then the run."""
        agent, request, conversation = record.agent, asked.request, asked.conversation
        session_id = str(request.session_id) if request.session_id else None
        history = await self._sessions.history(principal, session_id) if session_id else []
        history += conversation or []
        scope = str(principal.key_id) if self._limits.cache_per_key else ""
        stateless = session_id is None and not conversation  # the answer depends on the query alone
        scope += asked.options.variant()  # another cap, format or sampling: another answer
        key = cache_key(agent.name, agent.model, request.query, scope) if stateless else None
        hit = await self._cache.get(key) if key is not None else None
        if hit is not None:
            record.cached = True
            answer = self._from_cache(hit, agent, record.request_id)
            if events is not None:
                await events.start(record.request_id, agent)
                await events.text(answer.answer)
            return answer
        if events is not None:
            await events.start(record.request_id, agent)
        result = await self._run(agent, provider, request.query, history, account, events, asked.options)
        if session_id is not None:  # written with the ledger's row, in one transaction
            record.writes = self._sessions.append_writes(
                principal, session_id, [("user", request.query), ("assistant", result.answer)]
            )
        response = self._response(record, result, session_id)
        if key is not None and result.stop_reason == "answer":
            stored = _Cached(response=response, nanos=record.usage.nanos)
            await self._cache.set(key, stored.model_dump_json().encode())
        return response

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

    async def _run(
        self,
        agent: AgentType,
        provider: Provider,
        query: str,
        history: list[Message],
        account: _Account,
        events: QueryEvents | None,
        options: QueryOptions,
    ) -> RunResult:
        recorder = self._recorder
        deadline = time.monotonic() + agent.timeout_seconds
        try:
            return await run_agent(
                agent,
                provider,
                query,
                history,
                deadline=deadline,
                account=account,
                on_tool=lambda tool, ok, seconds: recorder.tool(account.record, tool, ok, seconds),
                events=events,
                tracer=recorder.tracer,
                options=options,
            )
        except ProviderError as exc:
            recorder.call_failed(account.record, exc.kind)
            raise

    @staticmethod
    def _response(record: QueryRecord, result: RunResult, session_id: str | None) -> QueryResponse:
        agent, usage = record.agent, record.usage
        return QueryResponse(
            request_id=record.request_id,
            agent_type=agent.name,
            provider=agent.provider,
            model=agent.model,
            answer=result.answer,
            stop_reason=result.stop_reason,
            steps=[StepPublic.model_validate(step) for step in result.steps],
            tool_calls=[ToolCallPublic.model_validate(call) for call in result.caller_calls],
            tokens=TokenCounts(
                input=usage.input_tokens,
                output=usage.output_tokens,
                cache_read=usage.cache_read_tokens,
                cache_write=usage.cache_write_tokens,
                reasoning=usage.reasoning_tokens,
            ),
            cost_dollars=nanos_to_dollars(usage.nanos),
            upstream_seconds=usage.upstream_seconds,
            cached=False,
            session_id=session_id,
        )

    def _from_cache(self, payload: bytes, agent: AgentType, request_id: str) -> QueryResponse:
        stored = _Cached.model_validate_json(payload)
        self._recorder.cache_hit(agent, stored.nanos)
        response = stored.response
        return response.model_copy(
            update={
                "request_id": request_id,
                "cached": True,
                "stop_reason": "cache",
                "steps": [],
                "cached_tokens": response.tokens,
                "upstream_seconds": 0.0,
                "tokens": TokenCounts(input=0, output=0),
                "cost_dollars": 0.0,
            }
        )


class _Cached(BaseModel):
    """A cached answer as stored: the response its first run gave, and what that run cost. Read and
    written by pydantic's own JSON: a third to a half of the CPU of model_dump and json.dumps, and of
    json.loads and model_validate."""

    response: QueryResponse
    nanos: int


@dataclass(frozen=True, slots=True)
class _Asked:
    """What the caller asked: the query, the history it sent along (the OpenAI face), its options."""

    request: QueryRequest
    conversation: list[Message] | None
    options: QueryOptions


@dataclass(frozen=True, slots=True)
class _Billing:
    """What a query's account charges against: prices, budgets, the rate windows, the recorder."""

    pricer: Pricer
    budgets: Budgets
    limiter: Windows
    recorder: Recorder
    limits: Limits
    clock: Clock


class _Account:
    """One query's model calls against its key's budget: each call reserves the most it can cost before it
    runs and settles what it cost after it (billing/budget.py); the record adds up what the calls used."""

    def __init__(
        self, billing: _Billing, provider: Provider, principal: Principal, record: QueryRecord
    ) -> None:
        self._billing = billing
        self._provider = provider
        self._principal = principal
        self.record = record
        limits = billing.limits
        budget = principal.monthly_budget_dollars
        if budget is None:
            budget = limits.default_monthly_budget_dollars
        self._budget = None if budget is None else round(budget * NANOS_PER_DOLLAR)
        self._month = month_of(billing.clock.now())
        self._floor = round(limits.query_cost_estimate_dollars * NANOS_PER_DOLLAR)
        self._reservation: Reservation | None = None
        self._tpm = principal.tpm_limit or limits.default_tpm_limit
        self._tokens_window = f"tpm:{principal.key_id}"
        self._tokens_held: str | None = None  # the handle of this call's tokens in the key's window
        self._span: Span | None = None  # the model call's span, from open to close

    async def check(self) -> None:
        """Refuse the query at once if its key's budget is already spent."""
        if self._budget is None:
            return
        if await self._billing.budgets.spent(self._principal.key_id, self._month) >= self._budget:
            raise self._exceeded()

    def _exceeded(self) -> BudgetExceeded:
        assert self._budget is not None
        return BudgetExceeded(
            f"This key's monthly budget of {dollars_text(self._budget)} is spent for {self._month} "
            "(or held by its queries in flight); an admin can raise it with PUT /api/v1/keys/{id}/limits."
        )

    async def open(self, messages: list[Message], tools: list[ToolSpec], max_tokens: int) -> bool:
        if not await self._admit(messages, tools, max_tokens):
            return False
        self._span = self._billing.recorder.open_call(self.record.agent, self._provider.name, max_tokens)
        return True

    async def _admit(self, messages: list[Message], tools: list[ToolSpec], max_tokens: int) -> bool:
        """Hold the call's tokens and reserve its most cost (``max_tokens`` of output); whether it may run."""
        billing, agent = self._billing, self.record.agent
        tokens = input_token_bound(messages, tools)
        if self._tpm is not None and not await self._hold_tokens(tokens + max_tokens):
            return False
        if self._budget is None:
            return True
        bound = call_bound(billing.pricer, agent.model, tokens, max_tokens)
        self._reservation = await billing.budgets.reserve(
            self._principal.key_id,
            self._month,
            self._budget,
            max(bound, self._floor),
            request_id=self.record.request_id,
            now=billing.clock.now(),
            # Past the query's deadline and a grace, a sweep may release it: its worker died mid-call.
            lifetime=timedelta(seconds=agent.timeout_seconds + billing.limits.reservation_grace_seconds),
        )
        if self._reservation is None:
            await self._release_tokens(0)
            if self.record.usage.calls == 0:
                raise self._exceeded()
            return False  # answered with what the earlier calls found (stop_reason "budget")
        return True

    async def _hold_tokens(self, most: int) -> bool:
        """Hold the most tokens this call can use in the key's tokens-per-minute window (the same bound
        as its budget reservation): calls in flight never pass the limit but for one let through alone."""
        assert self._tpm is not None
        window, self._tokens_held = await self._billing.limiter.reserve(
            self._tokens_window, self._tpm, 60, most
        )
        if self._tokens_held is not None:
            return True
        if self.record.usage.calls == 0:
            raise RateLimited(
                f"This key may use {self._tpm} tokens per minute; try again in {window.reset_seconds} s.",
                headers=window.headers(),
            )
        return False

    async def _release_tokens(self, used: int) -> None:
        handle, self._tokens_held = self._tokens_held, None
        if handle is not None:
            await self._billing.limiter.settle(self._tokens_window, handle, used)

    async def close(
        self,
        completion: Completion | None,
        seconds: float,
        first_token: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        billing, model = self._billing, self.record.agent.model
        price = billing.pricer.cost(model, tokens_of(completion)) if completion is not None else None
        span, self._span = self._span, None
        billing.recorder.close_call(self.record, span, completion, price, seconds, first_token, error)
        used = completion.input_tokens + completion.output_tokens if completion is not None else 0
        await self._release_tokens(used)
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            await billing.budgets.settle(reservation, price.nanodollars if price is not None else 0)


def tokens_of(completion: Completion) -> Tokens:
    """A call's usage as it is billed."""
    return Tokens(
        completion.input_tokens,
        completion.output_tokens,
        completion.cache_read_tokens,
        completion.cache_write_tokens,
        completion.reasoning_tokens,
    )
