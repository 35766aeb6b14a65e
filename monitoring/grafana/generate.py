"""The Grafana dashboard "Agentic Backend - Production Monitoring", as code.

Run ``make dashboard`` (or ``uv run python monitoring/grafana/generate.py``) after editing; it rewrites
``dashboards/agentic-backend.json``, which Grafana's provisioning loads. A test regenerates the JSON and
fails when the committed file differs, and another lints every panel (units, variables, rate windows).

Queries follow three rules so that they stay right with several replicas behind one job:

- counters are summed after ``rate()``/``increase()``, never before;
- ratios sum each side before dividing, so no two series have to match label for label;
- a gauge that every replica reports alike (``active_sessions`` counts the shared database) takes ``max``,
  a gauge each replica has its own of (``active_requests``) is summed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import common as parts
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

TITLE = "Agentic Backend - Production Monitoring"
UID = "agentic-backend-main"
OUTPUT = Path(__file__).with_name("dashboards") / "agentic-backend.json"

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
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


def selector(*matchers: str) -> str:
    return "{" + ", ".join((SELECTOR, *matchers)) + "}"


# Histograms whose buckets carry exemplars (a recent trace id each) when the service traces: their panels
# show them as points, and the Prometheus data source links a point's trace_id to the traces data source
# (monitoring/grafana/datasources/prometheus.yml).
EXEMPLARS = (
    "http_request_duration_seconds_bucket",
    "agent_query_duration_seconds_bucket",
    "llm_request_duration_seconds_bucket",
)


def query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    built = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return built.exemplar(True) if any(name in expr for name in EXEMPLARS) else built


def queries(*pairs: tuple[str, str]) -> list[prometheus.Dataquery]:
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def graph(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
    min_val: float | None = 0,
    max_val: float | None = None,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            parts.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(parts.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    if stacked:
        panel = panel.stacking(parts.StackingConfig().mode(common.StackingMode.NORMAL))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 12,
    height: int = 4,
    decimals: float | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)  # instant queries: no sparkline
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(parts.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    for target in targets:
        panel = panel.with_target(target.instant())
    return panel


def seed_panels() -> list[stat.Panel | timeseries.Panel]:
    """The seed's 13 panels, with its titles, in its order."""
    get_hits = f"sum(rate(cache_operations_total{selector(GET, HIT)}[{WINDOW}]))"
    gets = f"sum(rate(cache_operations_total{selector(GET)}[{WINDOW}]))"
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
            "Input and output tokens per second by model: sent to (input) and received from (output) it.",
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
            [query(f"sum by (type) (increase(api_tokens_total{selector()}[$__range]))", "{{type}}")],
            width=6,
            height=8,
        ),
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


def slo_panels() -> list[stat.Panel | timeseries.Panel]:
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


def agent_panels() -> list[stat.Panel | timeseries.Panel]:
    """What the seed lacks: model calls, errors by class, tool calls, steps, cache savings, saturation."""
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


def streaming_panels() -> list[stat.Panel | timeseries.Panel]:
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


def variables() -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    def label_values(name: str, expr: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(name)
            .datasource(DATASOURCE)
            .query(expr)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".+")
        )

    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # Where exemplars' traces are (Tempo; Jaeger works alike): the trace of a slow bucket's query.
        dashboard.DatasourceVariable("traces").label("Traces").type("tempo"),
        label_values("job", "label_values(http_requests_total, job)"),
        label_values("instance", 'label_values(http_requests_total{job=~"$job"}, instance)'),
    ]


HELD = 'le="0.1"'  # a loop held longer than 100 ms: what EventLoopBlocked counts


def waiting_panels() -> list[stat.Panel | timeseries.Panel]:
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


def build() -> model.Dashboard:
    board = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Traffic, latency, agents, LLM cost and tokens, cache and security of the Agentic Backend."
        )
        .tags(["agentic-backend", "generated"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(common.TimeZoneBrowser)
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
    for variable in variables():
        board = board.with_variable(variable)
    for panel in seed_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Service levels"))
    for panel in slo_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Agents, models and cache"))
    for panel in agent_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Streaming and the GenAI conventions"))
    for panel in streaming_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Waiting: event loops and the database"))
    for panel in waiting_panels():
        board = board.with_panel(panel)
    return board.build()


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
