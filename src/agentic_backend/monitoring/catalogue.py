"""The metric catalogue: every built-in metric, declared once.

Dashboards, alert rules, the JSON summary and the tests take names from here (or are checked against it).
Names follow Prometheus conventions: base units, a unit suffix (``_seconds``, ``_bytes``, ``_dollars``) and
``_total`` on counters. Every label takes a bounded set of values (see each help text).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass, fields

from agentic_backend import __version__
from agentic_backend.metricstore.families import (
    Aggregation,
    Family,
    HistogramSeries,
    MetricSpec,
    MetricType,
    Series,
)
from agentic_backend.metricstore.registry import Registry

# HTTP latency: a plain API call answers in 1-50 ms, an agent query that waits on an LLM in 1-60 s, and
# the tail up to two minutes matters for SLOs; 14 edges keep a histogram series at 16 slots.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# Agent queries: a cache hit takes tens of milliseconds, one LLM step 0.5-10 s, a multi-step tool loop up
# to minutes. Edges roughly double so that p50/p90/p99 are estimated within a factor of two anywhere.
AGENT_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)

OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = MetricSpec(
    "http_requests_total",
    MetricType.COUNTER,
    "HTTP requests answered, by method, route template (__unmatched__ when no route matched) and status "
    "code (499: the client disconnected first).",
    ("method", "endpoint", "status"),
)
HTTP_DURATION = MetricSpec(
    "http_request_duration_seconds",
    MetricType.HISTOGRAM,
    "Time from receiving an HTTP request to sending the last byte of its response.",
    ("method", "endpoint"),
    HTTP_DURATION_BUCKETS,
)
AGENT_QUERIES = MetricSpec(
    "agent_queries_total",
    MetricType.COUNTER,
    "Agent queries by agent type and outcome: success, error, rejected (budget, rate limit), or cancelled "
    "(the client of a streamed answer went away).",
    ("agent_type", "status"),
)
AGENT_DURATION = MetricSpec(
    "agent_query_duration_seconds",
    MetricType.HISTOGRAM,
    "Time to answer an agent query, all steps and tool calls included.",
    ("agent_type",),
    AGENT_DURATION_BUCKETS,
)
API_COST = MetricSpec(
    "api_cost_dollars_total",
    MetricType.COUNTER,
    "Money spent on LLM provider calls, in US dollars, by provider and model.",
    ("provider", "model"),
)
API_TOKENS = MetricSpec(
    "api_tokens_total",
    MetricType.COUNTER,
    "Tokens sent to (type=input) and received from (type=output) LLM providers, by provider and model; "
    "of the input, read from (cache_read) and written to (cache_write) the provider's prompt cache, and of "
    "the output, spent reasoning (reasoning): parts, not to be added to input and output.",
    ("provider", "model", "type"),
)
# Model calls: a small completion returns in 0.2-2 s, long generations and retries take up to minutes.
LLM_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)  # agent types allow 1-20 steps

AGENT_STEPS = MetricSpec(
    "agent_query_steps",
    MetricType.HISTOGRAM,
    "Model calls (steps) per agent query.",
    ("agent_type",),
    STEP_BUCKETS,
)
AGENT_TOOL_CALLS = MetricSpec(
    "agent_tool_calls_total",
    MetricType.COUNTER,
    "Tool calls made by agents, by tool and outcome (ok, error).",
    ("agent_type", "tool", "outcome"),
)
LLM_DURATION = MetricSpec(
    "llm_request_duration_seconds",
    MetricType.HISTOGRAM,
    "Time of one model call, by provider and model.",
    ("provider", "model"),
    LLM_DURATION_BUCKETS,
)
LLM_ERRORS = MetricSpec(
    "llm_errors_total",
    MetricType.COUNTER,
    "Failed model calls by provider, model and kind: timeout, rate_limit, auth, server, bad_response.",
    ("provider", "model", "kind"),
)
# Streaming: the GenAI semantic conventions' boundaries (gen_ai.server.time_to_first_token and
# gen_ai.server.time_per_output_token), so these read like OpenTelemetry's: a first token in 1 ms (a
# cache, a local model) to 10 s (a long prompt on a busy provider); 10 ms to 2.5 s per further token.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

AGENT_TTFT = MetricSpec(
    "agent_time_to_first_token_seconds",
    MetricType.HISTOGRAM,
    "Streamed agent queries: time from the request to the first token of the answer sent to the client, "
    "tool steps included.",
    ("agent_type",),
    TTFT_BUCKETS,
)
AGENT_TPOT = MetricSpec(
    "agent_time_per_output_token_seconds",
    MetricType.HISTOGRAM,
    "Streamed agent queries: time per answer token after the first, as the client receives them.",
    ("agent_type",),
    TPOT_BUCKETS,
)
# What the service adds to a query: well under a millisecond in memory, a few with a database commit, more
# when the loop or the database is busy.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
AGENT_OVERHEAD = MetricSpec(
    "agent_overhead_seconds",
    MetricType.HISTOGRAM,
    "Agent queries: the time the service itself added beyond its model calls and tools (authentication, "
    "admission, cache, session, ledger), as the X-Agentic-Overhead-Ms header says, by agent type.",
    ("agent_type",),
    OVERHEAD_BUCKETS,
)
LLM_TTFT = MetricSpec(
    "llm_time_to_first_token_seconds",
    MetricType.HISTOGRAM,
    "Streamed model calls: time from the call to its first token, by provider and model.",
    ("provider", "model"),
    TTFT_BUCKETS,
)
LLM_TPOT = MetricSpec(
    "llm_time_per_output_token_seconds",
    MetricType.HISTOGRAM,
    "Streamed model calls: time per output token after the first, by provider and model.",
    ("provider", "model"),
    TPOT_BUCKETS,
)
API_UNPRICED_CALLS = MetricSpec(
    "api_unpriced_calls_total",
    MetricType.COUNTER,
    "Model calls whose model has no known price (counted at $0): add it to AGENTIC_MODEL_PRICES.",
    ("provider", "model"),
)
CACHE_SAVED = MetricSpec(
    "cache_saved_dollars_total",
    MetricType.COUNTER,
    "US dollars the response cache saved: what the cached answers cost when they were first computed.",
    ("provider", "model"),
)
CACHE_OPERATIONS = MetricSpec(
    "cache_operations_total",
    MetricType.COUNTER,
    "Response-cache operations: get (hit, miss, error), set and delete (ok, error).",
    ("operation", "result"),
    initial_labels=(
        ("get", "hit"),
        ("get", "miss"),
        ("get", "error"),
        ("set", "ok"),
        ("set", "error"),
        ("delete", "ok"),
        ("delete", "error"),
    ),
)
CACHE_SIZE = MetricSpec(
    "cache_size_bytes",
    MetricType.GAUGE,
    "Bytes held by the response cache. With the in-memory cache each worker holds its own, kept current "
    "on every change and summed over workers; with Redis the one shared size, read at a scrape at most "
    "every 10 s per worker and reported once per replica (take max across replicas, not sum).",
    aggregation=Aggregation.LIVESUM,
)
AUTH_ATTEMPTS = MetricSpec(
    "auth_attempts_total",
    MetricType.COUNTER,
    "Authentication attempts by method (api_key, ...) and result (success, failure).",
    ("method", "result"),
    initial_labels=(("api_key", "success"), ("api_key", "failure")),
)
AUTH_FAILURES = MetricSpec(
    "auth_failures_total",
    MetricType.COUNTER,
    "Failed authentications by reason: missing, malformed, unknown, revoked (a key that was revoked), "
    "throttled (the client address is cooling down after repeated failures).",
    ("reason",),
    initial_labels=(("missing",), ("malformed",), ("unknown",), ("revoked",), ("throttled",)),
)
PERMISSION_CHECKS = MetricSpec(
    "permission_checks_total",
    MetricType.COUNTER,
    "Permission checks by permission (e.g. agents:query) and result (allowed, denied).",
    ("permission", "result"),
)
ACTIVE_SESSIONS = MetricSpec(
    "active_sessions",
    MetricType.GAUGE,
    "Unexpired agent sessions, counted in the database at most once a second (less often where a count is "
    "slow). Every replica sharing a database reports the same count: aggregate with max(), never sum().",
    aggregation=Aggregation.SHARED,
)
ACTIVE_REQUESTS = MetricSpec(
    "active_requests",
    MetricType.GAUGE,
    "HTTP requests being handled right now (summed over worker processes; sum() across replicas).",
    aggregation=Aggregation.LIVESUM,
)
BUILD_INFO = MetricSpec(
    "agentic_backend_build_info",
    MetricType.GAUGE,
    "Always 1; the labels say which version of the service and of Python is running.",
    ("version", "python_version"),
    aggregation=Aggregation.MAX,
    initial_labels=((__version__, platform.python_version()),),
)
WORKER_EXITS = MetricSpec(
    "agentic_backend_worker_exits_total",
    MetricType.COUNTER,
    "Worker processes of 'serve --workers N' that exited (killed, crashed, out of memory) and were "
    "replaced by the supervisor; what they had counted is kept. Always 0 with one process.",
    aggregation=Aggregation.SHARED,  # read from the shared archive by the answering worker
)
# Waiting, not computing: how late the event loop runs a callback that is due (a loop held by a long
# computation or a blocking call delays every request of its worker), and how long a request waits for the
# database (a pooled connection, a lock held by another worker or replica). Edges from 1 ms, below which
# nothing is felt, to 10 s; 20 ms is an edge because a loop held longer is what the EventLoopBlocked alert
# and the workers benchmark look for.
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EVENT_LOOP_LAG = MetricSpec(
    "event_loop_lag_seconds",
    MetricType.HISTOGRAM,
    "How late each worker's event loop ran a timer it checks every 10 ms (50 ms while the worker has no "
    "request in flight and its loop runs nothing; by worker: 0 with one process, "
    "0 to N-1 under 'serve --workers N', a replaced worker taking the slot of the one it replaces). A "
    "loop held that long delays every request of its worker.",
    ("worker",),
    WAIT_BUCKETS,
)
EVENT_LOOP_LATE = MetricSpec(
    "event_loop_late_seconds",
    MetricType.HISTOGRAM,
    "Why event_loop_lag_seconds' timers were late, for those 5 ms late or more: each one's lateness split "
    "by cause, by worker: busy (the worker's own code ran: a held loop), cpu_wait (the worker was ready and "
    "waited for a CPU: other workers or processes on its cores, a container's CPU quota) or other (neither: "
    "the machine itself, such as a virtual machine descheduled by its host). From the loop thread's "
    "schedstat (Linux). The busy part's highest bucket is the longest the worker's own code held its loop.",
    ("worker", "cause"),
    WAIT_BUCKETS,
)
DATABASE_WAIT = MetricSpec(
    "database_wait_seconds",
    MetricType.HISTOGRAM,
    "Time a request waited for the database before its statement ran, by kind: pool (for a connection: "
    "all of the pool's are in use, or a new one is being opened) or lock (for a lock another connection, "
    "worker or replica holds: a rate window's, or SQLite's write lock).",
    ("kind",),
    WAIT_BUCKETS,
    initial_labels=(("pool",), ("lock",)),
)

# OpenTelemetry's GenAI semantic conventions (v1.41), in the Prometheus form an OpenTelemetry exporter
# gives them (dots to underscores, the unit as a suffix), next to the seed's names, so that Grafana's and
# OpenLIT's GenAI dashboards read this service as they read any instrumented one. Their bucket boundaries
# are the conventions' own. Labels are the attributes: gen_ai.operation.name ("chat" for a model call,
# "invoke_agent" for a query), gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model (a model
# name no agent type configures is "_OTHER": providers choose those strings), gen_ai.token.type, and
# error.type (empty, so absent in PromQL, when the operation succeeded). AGENTIC_GENAI_METRICS=false
# leaves them out.
GENAI_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
GENAI_TOKEN_BUCKETS = (
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
)  # fmt: skip
GENAI_OTHER = "_OTHER"
_GENAI_CALL = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)

GENAI_CLIENT_DURATION = MetricSpec(
    "gen_ai_client_operation_duration_seconds",
    MetricType.HISTOGRAM,
    "GenAI semantic conventions' gen_ai.client.operation.duration: one model call, as this service (the "
    "client) saw it.",
    (*_GENAI_CALL, "error_type"),
    GENAI_DURATION_BUCKETS,
)
GENAI_CLIENT_TOKENS = MetricSpec(
    "gen_ai_client_token_usage",
    MetricType.HISTOGRAM,
    "GenAI semantic conventions' gen_ai.client.token.usage: tokens of one model call, by type (input, "
    "output).",
    (*_GENAI_CALL, "gen_ai_token_type"),
    GENAI_TOKEN_BUCKETS,
)
GENAI_SERVER_DURATION = MetricSpec(
    "gen_ai_server_request_duration_seconds",
    MetricType.HISTOGRAM,
    "GenAI semantic conventions' gen_ai.server.request.duration: one agent query answered by this "
    "service (the request model is the agent type).",
    (*_GENAI_CALL, "error_type"),
    GENAI_DURATION_BUCKETS,
)
GENAI_SERVER_TTFT = MetricSpec(
    "gen_ai_server_time_to_first_token_seconds",
    MetricType.HISTOGRAM,
    "GenAI semantic conventions' gen_ai.server.time_to_first_token: a streamed answer's first token.",
    _GENAI_CALL,
    TTFT_BUCKETS,
)
GENAI_SERVER_TPOT = MetricSpec(
    "gen_ai_server_time_per_output_token_seconds",
    MetricType.HISTOGRAM,
    "GenAI semantic conventions' gen_ai.server.time_per_output_token: a streamed answer's pace after its "
    "first token.",
    _GENAI_CALL,
    TPOT_BUCKETS,
)
GENAI_CATALOGUE: tuple[MetricSpec, ...] = (
    GENAI_CLIENT_DURATION,
    GENAI_CLIENT_TOKENS,
    GENAI_SERVER_DURATION,
    GENAI_SERVER_TTFT,
    GENAI_SERVER_TPOT,
)

CATALOGUE: tuple[MetricSpec, ...] = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    AGENT_QUERIES,
    AGENT_DURATION,
    API_COST,
    API_TOKENS,
    CACHE_OPERATIONS,
    CACHE_SIZE,
    AUTH_ATTEMPTS,
    AUTH_FAILURES,
    PERMISSION_CHECKS,
    ACTIVE_SESSIONS,
    ACTIVE_REQUESTS,
    BUILD_INFO,
    AGENT_STEPS,
    AGENT_TOOL_CALLS,
    LLM_DURATION,
    LLM_ERRORS,
    API_UNPRICED_CALLS,
    CACHE_SAVED,
    WORKER_EXITS,
    AGENT_TTFT,
    AGENT_TPOT,
    LLM_TTFT,
    LLM_TPOT,
    EVENT_LOOP_LAG,
    EVENT_LOOP_LATE,
    DATABASE_WAIT,
    AGENT_OVERHEAD,
)


@dataclass(frozen=True, slots=True)
class GenAIMetrics:
    """Handles on the GenAI semantic conventions' families."""

    client_duration: Family[HistogramSeries]
    client_tokens: Family[HistogramSeries]
    server_duration: Family[HistogramSeries]
    server_ttft: Family[HistogramSeries]
    server_tpot: Family[HistogramSeries]

    @classmethod
    def register(cls, registry: Registry) -> GenAIMetrics:
        return cls(*(registry.register(spec) for spec in GENAI_CATALOGUE))


@dataclass(frozen=True, slots=True)
class BuiltinMetrics:
    """Typed handles on the catalogue's families, for the code that records them."""

    http_requests: Family[Series]
    http_duration: Family[HistogramSeries]
    agent_queries: Family[Series]
    agent_duration: Family[HistogramSeries]
    api_cost: Family[Series]
    api_tokens: Family[Series]
    cache_operations: Family[Series]
    cache_size: Family[Series]
    auth_attempts: Family[Series]
    auth_failures: Family[Series]
    permission_checks: Family[Series]
    active_sessions: Family[Series]
    active_requests: Family[Series]
    build_info: Family[Series]
    agent_steps: Family[HistogramSeries]
    agent_tool_calls: Family[Series]
    llm_duration: Family[HistogramSeries]
    llm_errors: Family[Series]
    api_unpriced_calls: Family[Series]
    cache_saved: Family[Series]
    worker_exits: Family[Series]
    agent_ttft: Family[HistogramSeries]
    agent_tpot: Family[HistogramSeries]
    llm_ttft: Family[HistogramSeries]
    llm_tpot: Family[HistogramSeries]
    event_loop_lag: Family[HistogramSeries]
    event_loop_late: Family[HistogramSeries]
    database_wait: Family[HistogramSeries]
    agent_overhead: Family[HistogramSeries]
    genai: GenAIMetrics | None = None  # AGENTIC_GENAI_METRICS

    @classmethod
    def register(cls, registry: Registry, *, genai: bool = True) -> BuiltinMetrics:
        families = [registry.register(spec) for spec in CATALOGUE]
        handles = dict(zip([f.name for f in fields(cls) if f.name != "genai"], families, strict=True))
        metrics = cls(**handles, genai=GenAIMetrics.register(registry) if genai else None)
        metrics.build_info.labels(__version__, platform.python_version()).set(1.0)
        return metrics

    # Series a dashboard shows exist from start-up, at zero, so that a rate reads 0 rather than nothing and
    # increase() over a range counts a counter's first increment (Prometheus sees no rise in a series'
    # first sample). Fixed label sets are the specs' ``initial_labels``; those that depend on the
    # configuration (permissions, agent types and their models) are declared here, in one place.

    def expect_permissions(self, permissions: Iterable[str]) -> None:
        for permission in permissions:
            for result in ("allowed", "denied"):
                self.permission_checks.labels(permission, result)

    def expect_agent(self, agent_type: str, provider: str | None, model: str) -> None:
        """``provider`` is None when the agent type's provider is not configured (it makes no calls)."""
        for status in ("success", "error", "rejected", "cancelled"):
            self.agent_queries.labels(agent_type, status)
        self.agent_ttft.labels(agent_type)
        self.agent_tpot.labels(agent_type)
        self.agent_overhead.labels(agent_type)
        if provider is None:
            return
        self.api_cost.labels(provider, model)
        for kind in ("input", "output"):
            self.api_tokens.labels(provider, model, kind)
        self.llm_ttft.labels(provider, model)
        self.llm_tpot.labels(provider, model)
        if self.genai is not None:
            call = ("chat", provider, model, model)
            self.genai.client_duration.labels(*call, "")
            for kind in ("input", "output"):
                self.genai.client_tokens.labels(*call, kind)
            self.genai.server_duration.labels("invoke_agent", provider, agent_type, model, "")
