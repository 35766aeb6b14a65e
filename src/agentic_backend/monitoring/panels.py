"""The dashboard's panels as data: one definition per panel (title, description, unit, PromQL), read by
the Grafana generator (``monitoring/grafana/generate.py``) and by the console, which sends the same PromQL
to Prometheus or evaluates it over the service's own history (``monitoring/promql.py``). A test holds the
committed Grafana JSON equal to these definitions, so the two cannot drift.

Queries follow three rules so that they stay right with several replicas behind one job:

- counters are summed after ``rate()``/``increase()``, never before;
- ratios sum each side before dividing, so no two series have to match label for label;
- a gauge that every replica reports alike (``active_sessions`` counts the shared database) takes ``max``,
  a gauge each replica has its own of (``active_requests``) is summed.

``$job`` and ``$instance`` are Grafana's variables, ``$__rate_interval`` and ``$__range`` its intervals;
the console substitutes them (every job and instance, its step's window, its range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

TITLE = "Agentic Backend - Production Monitoring"
SELECTOR = 'job=~"$job", instance=~"$instance"'
WINDOW = "$__rate_interval"
OR_ZERO = " or on() vector(0)"  # for counters that rarely exist: a flat zero rather than "No data"

# An agent query's time is the model's; the latency SLO (alerts/slo.yml) leaves that route out.
QUERY_ROUTE = "/api/v1/agents/{agent_type}/query"
FAILED = 'status=~"5.."'
DENIED = 'result="denied"'
GET = 'operation="get"'
HIT = 'result="hit"'
SERIES_OVERFLOW = "agentic_backend_metric_series_overflow_total"
FAST = 'le="0.5"'  # the latency SLO's threshold, a bucket edge of http_request_duration_seconds


BILLED = 'type=~"input|output"'  # api_tokens_total's totals; its other types are parts of these


def selector(*matchers: str) -> str:
    return "{" + ", ".join((SELECTOR, *matchers)) + "}"


# Histograms whose buckets carry exemplars (a recent trace id each) when the service traces: their panels
# show them as points, and the Prometheus data source links a point's trace_id to the traces data source
# (monitoring/grafana/datasources/prometheus.yml).


@dataclass(frozen=True, slots=True)
class Target:
    expr: str
    legend: str = "__auto"  # Grafana's legend format: {{label}} is replaced by the label's value


@dataclass(frozen=True, slots=True)
class Panel:
    """A stat (one number over the range, instant queries) or a graph (a time series per target)."""

    kind: Literal["stat", "graph"]
    title: str
    description: str
    unit: str  # Grafana's unit id: short, s, reqps, percentunit, currencyUSD, bytes
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8
    min_val: float | None = 0
    max_val: float | None = None
    stacked: bool = False
    decimals: float | None = None


@dataclass(frozen=True, slots=True)
class Row:
    title: str | None  # None: the seed's panels, above the first row
    panels: tuple[Panel, ...]


def query(expr: str, legend: str = "__auto") -> Target:
    return Target(expr, legend)


def queries(*pairs: tuple[str, str]) -> list[Target]:
    return [Target(expr, legend) for expr, legend in pairs]


def graph(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Target],
    *,
    width: int = 12,
    height: int = 8,
    min_val: float | None = 0,
    max_val: float | None = None,
    stacked: bool = False,
) -> Panel:
    return Panel("graph", title, description, unit, tuple(targets), width, height, min_val, max_val, stacked)


def single(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Target],
    *,
    width: int = 12,
    height: int = 4,
    decimals: float | None = None,
) -> Panel:
    return Panel("stat", title, description, unit, tuple(targets), width, height, None, None, False, decimals)


def seed_panels() -> list[Panel]:
    """The seed's 13 panels, with its titles, in its order."""
    return [*_traffic_panels(), *_spend_panels(), *_security_panels()]


def _traffic_panels() -> list[Panel]:
    """The seed's first row: how much traffic, how fast, for the service and for the agents."""
    return [
        single(
            "HTTP Requests",
            "HTTP requests answered in the dashboard's time range, over every replica, right across "
            "restarts (increase() treats a counter reset as one). The rate over time is in Request Rate.",
            "short",
            [query(f"sum(increase(http_requests_total{selector()}[$__range]))", "requests")],
            width=12,
        ),
        single(
            "Active Sessions",
            "Sessions not yet expired. Every replica counts the shared database, so this is the max across "
            "replicas, not their sum.",
            "short",
            [query(f"max(active_sessions{selector()})", "sessions")],
            width=12,
        ),
        graph(
            "Request Rate",
            "Requests per second by route template, summed over replicas.",
            "reqps",
            queries(
                (f"sum by (endpoint) (rate(http_requests_total{selector()}[{WINDOW}]))", "{{endpoint}}"),
                (f"sum(rate(http_requests_total{selector(FAILED)}[{WINDOW}]))", "5xx"),
            ),
        ),
        graph(
            "Request Latency",
            "p50, p90 and p99 latency over all routes, estimated from the buckets of every replica.",
            "s",
            queries(
                *(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(http_request_duration_seconds_bucket{selector()}[{WINDOW}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.9, 0.99)
                )
            ),
        ),
        graph(
            "Agent Query Rate",
            "Agent queries per second by agent type and outcome (success, error, rejected).",
            "reqps",
            [
                query(
                    f"sum by (agent_type, status) (rate(agent_queries_total{selector()}[{WINDOW}]))",
                    "{{agent_type}} {{status}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Agent Duration",
            "Median and 95th percentile time to answer an agent query, by agent type.",
            "s",
            queries(
                *(
                    (
                        f"histogram_quantile({q}, sum by (agent_type, le) "
                        f"(rate(agent_query_duration_seconds_bucket{selector()}[{WINDOW}])))",
                        f"{{{{agent_type}}}} p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                )
            ),
        ),
    ]


def _spend_panels() -> list[Panel]:
    """What it costs, per model, and whether the cache pays off."""
    get_hits = f"sum(rate(cache_operations_total{selector(GET, HIT)}[{WINDOW}]))"
    gets = f"sum(rate(cache_operations_total{selector(GET)}[{WINDOW}]))"
    return [
        graph(
            "API Cost",
            "LLM spend by provider and model, in US dollars per hour at the current pace.",
            "currencyUSD",
            [
                query(
                    f"sum by (provider, model) (rate(api_cost_dollars_total{selector()}[{WINDOW}])) * 3600",
                    "{{provider}}/{{model}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Token Usage",
            "Tokens per second by model: sent to (input) and received from (output) it; cache_read, "
            "cache_write and reasoning are parts of those, not more tokens.",
            "short",
            [
                query(
                    f"sum by (model, type) (rate(api_tokens_total{selector()}[{WINDOW}]))",
                    "{{model}} {{type}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Cache Hit Rate",
            "Share of response-cache lookups answered from the cache (hits over all gets).",
            "percentunit",
            [query(f"{get_hits} / {gets}", "hit ratio")],
            max_val=1,
        ),
        single(
            "Total Cost",
            "US dollars spent on LLM calls in the dashboard's time range, over every replica, right across "
            "restarts. Prometheus estimates it from samples (within a scrape interval's share at the "
            "edges); the exact per-key total is the usage ledger: GET /api/v1/usage.",
            "currencyUSD",
            [query(f"sum(increase(api_cost_dollars_total{selector()}[$__range]))", "dollars")],
            width=6,
            height=8,
            decimals=4,
        ),
        single(
            "Total Tokens",
            "Tokens used in the dashboard's time range, input and output, over every replica, right across "
            "restarts.",
            "short",
            # input and output only: cache_read, cache_write and reasoning are parts of them
            [query(f"sum by (type) (increase(api_tokens_total{selector(BILLED)}[$__range]))", "{{type}}")],
            width=6,
            height=8,
        ),
    ]


def _security_panels() -> list[Panel]:
    """Whether anyone is hammering the login or poking at permissions."""
    return [
        graph(
            "Authentication",
            "Authentication attempts per second by result; a burst of failures is someone guessing keys.",
            "reqps",
            [
                query(
                    f"sum by (result) (rate(auth_attempts_total{selector()}[{WINDOW}]))",
                    "{{result}}",
                )
            ],
        ),
        graph(
            "Permissions",
            "Permission checks per second by result; denials by permission show who pokes at what.",
            "reqps",
            queries(
                (f"sum by (result) (rate(permission_checks_total{selector()}[{WINDOW}]))", "{{result}}"),
                (
                    f"sum by (permission) (rate(permission_checks_total{selector(DENIED)}[{WINDOW}]))",
                    "denied {{permission}}",
                ),
            ),
        ),
    ]


def slo_panels() -> list[Panel]:
    """Service levels: the availability and latency SLOs of alerts/slo.yml and their budgets."""
    errors = f"sum(increase(http_requests_total{selector(FAILED)}[30d]))"
    requests = f"sum(increase(http_requests_total{selector()}[30d]))"
    not_query = f'endpoint!="{QUERY_ROUTE}"'
    slow = (
        f"(sum(rate(http_request_duration_seconds_count{selector(not_query)}[{WINDOW}])) - "
        f"sum(rate(http_request_duration_seconds_bucket{selector(not_query, FAST)}[{WINDOW}]))) / "
        f"sum(rate(http_request_duration_seconds_count{selector(not_query)}[{WINDOW}]))"
    )
    return [
        single(
            "Availability (30 days)",
            "Share of requests answered without a 5xx over the last 30 days; the SLO is 99.9 %.",
            "percentunit",
            [query(f"1 - ({errors} / {requests})", "availability")],
            width=6,
            decimals=3,
        ),
        single(
            "Error Budget Left (30 days)",
            "Share of the 30-day error budget (0.1 % of requests) not yet spent; below 0 the SLO is missed.",
            "percentunit",
            [query(f"1 - ({errors} / {requests}) / 0.001", "budget left")],
            width=6,
        ),
        graph(
            "Error Ratio",
            "Share of requests answered 5xx, with the 5 % line of HighErrorRate.",
            "percentunit",
            [
                query(
                    f"sum(rate(http_requests_total{selector(FAILED)}[{WINDOW}])) / "
                    f"sum(rate(http_requests_total{selector()}[{WINDOW}]))",
                    "5xx ratio",
                )
            ],
        ),
        graph(
            "Slow Request Ratio",
            "Share of requests slower than 500 ms (agent queries excepted); the latency SLO allows 1 %.",
            "percentunit",
            [query(slow, "slower than 500 ms")],
            width=24,
        ),
    ]


def agent_panels() -> list[Panel]:
    """What the seed lacks: model calls, errors by class, tool calls, steps, cache savings, saturation."""
    return [*_model_call_panels(), *_capacity_panels()]


def _model_call_panels() -> list[Panel]:
    """The model calls and tools beneath the agents: latency, errors, tools, steps."""
    return [
        graph(
            "LLM Call Latency (p95)",
            "95th percentile time of one model call, by provider and model.",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (provider, model, le) "
                    f"(rate(llm_request_duration_seconds_bucket{selector()}[{WINDOW}])))",
                    "{{provider}}/{{model}}",
                )
            ],
        ),
        graph(
            "Service Overhead (p50, p99)",
            "What the service itself adds to a query beyond its model calls and tools (authentication, "
            "admission, cache, session, ledger): each answer's X-Agentic-Overhead-Ms, over every agent type.",
            "s",
            [
                query(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(agent_overhead_seconds_bucket{selector()}[{WINDOW}])))",
                    "p50",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(agent_overhead_seconds_bucket{selector()}[{WINDOW}])))",
                    "p99",
                ),
            ],
        ),
        graph(
            "LLM Errors by Class",
            "Failed model calls per second by kind: timeout, rate_limit, auth, server, bad_response.",
            "reqps",
            [
                query(
                    f"sum by (provider, kind) (rate(llm_errors_total{selector()}[{WINDOW}]))",
                    "{{provider}} {{kind}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Tool Calls",
            "Tool calls per second by tool and outcome (ok, error).",
            "reqps",
            [
                query(
                    f"sum by (tool, outcome) (rate(agent_tool_calls_total{selector()}[{WINDOW}]))",
                    "{{tool}} {{outcome}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Steps per Query (p90)",
            "90th percentile of model calls per agent query, by agent type.",
            "short",
            [
                query(
                    "histogram_quantile(0.9, sum by (agent_type, le) "
                    f"(rate(agent_query_steps_bucket{selector()}[{WINDOW}])))",
                    "{{agent_type}}",
                )
            ],
        ),
    ]


def _capacity_panels() -> list[Panel]:
    """What the cache saves and holds, requests in flight, and what escapes pricing or the series budget."""
    return [
        graph(
            "Cache Savings",
            "US dollars per hour the response cache saves: what its answers cost when first computed.",
            "currencyUSD",
            [
                query(
                    f"sum by (model) (rate(cache_saved_dollars_total{selector()}[{WINDOW}])) * 3600",
                    "{{model}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Cache Size",
            "Bytes held by the response cache, per replica (with Redis, each reports the shared size).",
            "bytes",
            [query(f"sum by (instance) (cache_size_bytes{selector()})", "{{instance}}")],
        ),
        graph(
            "Active Requests",
            "Requests in flight, summed over replicas: a climb means the service is saturated.",
            "short",
            [query(f"sum(active_requests{selector()})", "in flight")],
        ),
        graph(
            "Unpriced Calls and Series Overflow",
            "Model calls with no known price (counted at $0) and metric updates folded into __overflow__ "
            "series; both should stay at zero (a flat zero when none happened).",
            "reqps",
            queries(
                (
                    f"sum by (model) (rate(api_unpriced_calls_total{selector()}[{WINDOW}])){OR_ZERO}",
                    "unpriced {{model}}",
                ),
                (
                    f"sum by (metric) (rate({SERIES_OVERFLOW}{selector()}[{WINDOW}])){OR_ZERO}",
                    "overflow {{metric}}",
                ),
            ),
        ),
    ]


def streaming_panels() -> list[Panel]:
    """Streamed answers: how soon the first token comes, and how fast the rest follow."""
    return [
        graph(
            "Time to First Token (p95)",
            "95th percentile time from a streamed query to the first answer token its client receives, by "
            "agent type, and from a streamed model call to its first token, by model. The alert "
            "SlowTimeToFirstToken watches the first.",
            "s",
            queries(
                (
                    "histogram_quantile(0.95, sum by (agent_type, le) "
                    f"(rate(agent_time_to_first_token_seconds_bucket{selector()}[{WINDOW}])))",
                    "answer {{agent_type}}",
                ),
                (
                    "histogram_quantile(0.95, sum by (model, le) "
                    f"(rate(llm_time_to_first_token_seconds_bucket{selector()}[{WINDOW}])))",
                    "model {{model}}",
                ),
            ),
        ),
        graph(
            "Time per Output Token (p50)",
            "Median time per token after the first: the pace at which answers appear, by agent type, and "
            "the models' own pace.",
            "s",
            queries(
                (
                    "histogram_quantile(0.5, sum by (agent_type, le) "
                    f"(rate(agent_time_per_output_token_seconds_bucket{selector()}[{WINDOW}])))",
                    "answer {{agent_type}}",
                ),
                (
                    "histogram_quantile(0.5, sum by (model, le) "
                    f"(rate(llm_time_per_output_token_seconds_bucket{selector()}[{WINDOW}])))",
                    "model {{model}}",
                ),
            ),
        ),
        graph(
            "GenAI Operation Duration (p95)",
            "The OpenTelemetry GenAI conventions' gen_ai.client.operation.duration (each model call) and "
            "gen_ai.server.request.duration (each agent query), 95th percentile by model: what Grafana's "
            "and OpenLIT's GenAI dashboards read.",
            "s",
            queries(
                (
                    "histogram_quantile(0.95, sum by (gen_ai_request_model, le) "
                    f"(rate(gen_ai_client_operation_duration_seconds_bucket{selector()}[{WINDOW}])))",
                    "call {{gen_ai_request_model}}",
                ),
                (
                    "histogram_quantile(0.95, sum by (gen_ai_request_model, le) "
                    f"(rate(gen_ai_server_request_duration_seconds_bucket{selector()}[{WINDOW}])))",
                    "query {{gen_ai_request_model}}",
                ),
            ),
        ),
        graph(
            "GenAI Tokens per Call (p50)",
            "gen_ai.client.token.usage: the median tokens of one model call, by model and token type.",
            "short",
            [
                query(
                    "histogram_quantile(0.5, sum by (gen_ai_request_model, gen_ai_token_type, le) "
                    f"(rate(gen_ai_client_token_usage_bucket{selector()}[{WINDOW}])))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
        ),
    ]


HELD = 'le="0.1"'  # a loop held longer than 100 ms: what EventLoopBlocked counts
WAITING = "Waiting: event loops and the database"


def waiting_panels() -> list[Panel]:
    """Waiting, not computing: each worker's event loop and the database (issue: more workers never
    slower). A request can be slow while no CPU is busy; these say where it waited."""
    lag = f"event_loop_lag_seconds_bucket{selector()}"
    by_worker = "sum by (instance, worker)"
    held = (
        f"({by_worker} (rate(event_loop_lag_seconds_count{selector()}[{WINDOW}])) - "
        f"{by_worker} (rate(event_loop_lag_seconds_bucket{selector(HELD)}[{WINDOW}]))) * 60"
    )
    return [
        graph(
            "Event Loop Lag (p99) by Worker",
            "99th percentile of how late each worker's event loop ran a timer due every 10 ms: above a few "
            "milliseconds, something holds the loop and every request of that worker waits.",
            "s",
            [
                query(
                    f"histogram_quantile(0.99, sum by (instance, worker, le) (rate({lag}[{WINDOW}])))",
                    "{{instance}} worker {{worker}}",
                )
            ],
            width=8,
        ),
        graph(
            "Event Loop Held over 100 ms",
            "Times a minute a worker's event loop was held over 100 ms (the EventLoopBlocked alert fires "
            "above one a minute for 10 minutes).",
            "short",
            [query(held, "{{instance}} worker {{worker}}")],
            width=8,
        ),
        graph(
            "Database Waits (p99)",
            "99th percentile of a request's wait for the database, by kind: pool (a free connection) or "
            "lock (a rate window's lock, SQLite's write lock held by another worker); a kind that did "
            "not wait in the window is left out.",
            "s",
            [
                query(
                    "histogram_quantile(0.99, sum by (kind, le) "
                    f"(rate(database_wait_seconds_bucket{selector()}[{WINDOW}]))) and on (kind) "
                    f"sum by (kind) (rate(database_wait_seconds_count{selector()}[{WINDOW}])) > 0",
                    "{{kind}}",
                )
            ],
            width=8,
        ),
    ]


ROWS = (
    Row(None, tuple(seed_panels())),
    Row("Service levels", tuple(slo_panels())),
    Row("Agents, models and cache", tuple(agent_panels())),
    Row("Streaming and the GenAI conventions", tuple(streaming_panels())),
    Row(WAITING, tuple(waiting_panels())),
)
