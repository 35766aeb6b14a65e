"""The dashboard's PromQL evaluated over the embedded history: Prometheus's semantics where the panels need
them (rate, increase, histogram_quantile, matching, ``or on() vector(0)``), every panel evaluates, and the
Grafana dashboard and the console read one definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentic_backend.console.history import Loaded, decode, encode, leaves_of, measure
from agentic_backend.console.overview import PANELS, promql_for, rate_window
from agentic_backend.core.config import Settings
from agentic_backend.metricstore.families import HistogramSeries
from agentic_backend.monitoring.panels import ROWS
from agentic_backend.monitoring.promql import Evaluation, UnsupportedQuery, Vector, legend, parse
from agentic_backend.monitoring.service import Telemetry

DASHBOARD = Path(__file__).parents[3] / "monitoring" / "grafana" / "dashboards" / "agentic-backend.json"


def source(samples: dict[float, dict[str, list[list[str | float]]]], exprs: list[str]) -> Loaded:
    loaded = Loaded(leaves_of(exprs))
    for at, values in sorted(samples.items()):
        loaded.add("run-a", at, values)
    return loaded


def run(
    expr: str, loaded: Loaded, times: list[float], window: float = 60, range_: float = 3600
) -> Vector | float:
    return Evaluation(loaded, times, window=window, range_=range_).run(parse(expr))


def only(result: Vector | float) -> list[float | None]:
    """The values of a one-series result."""
    assert isinstance(result, dict)
    (values,) = result.values()
    return values


def test_rate_is_the_growth_over_the_window_and_a_counter_starts_at_zero() -> None:
    expr = (
        'sum by (endpoint) (rate(http_requests_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))'
    )
    key = parse(expr).leaves[0].key
    loaded = source(
        {100: {key: [["/a", 30.0]]}, 160: {key: [["/a", 90.0]]}, 220: {key: [["/a", 90.0]]}}, [expr]
    )
    got = run(expr, loaded, [160, 220, 280])
    assert got == {(("endpoint", "/a"),): [1.0, 0.0, 0.0]}
    # Before the run's first sample the counter is zero: increase over a range holding the start is the total.
    total = 'sum(increase(http_requests_total{job=~"$job", instance=~"$instance"}[$__range]))'
    loaded = source({100: {parse(total).leaves[0].key: [[90.0]]}}, [total])
    assert run(total, loaded, [130], range_=3600) == {(): [90.0]}
    assert run(total, loaded, [130], range_=10) == {(): [0.0]}


def test_histogram_quantile_interpolates_as_prometheus_does() -> None:
    expr = "histogram_quantile(0.5, sum by (le) (rate(d_bucket[$__rate_interval])))"
    key = parse(expr).leaves[0].key
    buckets: list[list[str | float]] = [["0.1", 10.0], ["0.5", 30.0], ["1.0", 40.0], ["+Inf", 40.0]]
    loaded = source({0: {key: [[le, 0.0] for le, _ in buckets]}, 60: {key: buckets}}, [expr])
    assert only(run(expr, loaded, [60])) == [
        pytest.approx(0.3)
    ]  # rank 20: 0.1 + (0.5 - 0.1) * (20 - 10) / 20
    p99 = expr.replace("0.5,", "0.99,")
    assert only(run(p99, loaded, [60])) == [pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)]
    # Everything in +Inf: the highest finite edge; no observations: no value.
    inf: list[list[str | float]] = [["0.1", 0.0], ["0.5", 0.0], ["1.0", 0.0], ["+Inf", 5.0]]
    loaded = source({0: {key: [[le, 0.0] for le, _ in inf]}, 60: {key: inf}}, [expr])
    assert only(run(expr, loaded, [60])) == [1.0]
    assert only(run(expr, loaded, [0])) == [None]


def test_ratios_or_vector_and_filters() -> None:
    hits = 'sum(rate(c{operation="get", result="hit"}[1m])) / sum(rate(c{operation="get"}[1m]))'
    leaves = parse(hits).leaves
    loaded = source(
        {
            0: {leaves[0].key: [[0.0]], leaves[1].key: [[0.0]]},
            60: {leaves[0].key: [[30.0]], leaves[1].key: [[40.0]]},
        },
        [hits],
    )
    assert run(hits, loaded, [60]) == {(): [0.75]}
    assert run(hits, loaded, [0]) == {(): [None]}  # 0/0: no value, not a crash
    fallback = "sum by (model) (rate(u[1m])) or on() vector(0)"
    assert run(fallback, source({}, [fallback]), [60, 120]) == {(): [0.0, 0.0]}
    filtered = "sum by (kind) (rate(w_count[1m])) > 0"
    key = parse(filtered).leaves[0].key
    loaded = source(
        {0: {key: [["pool", 0.0], ["lock", 0.0]]}, 60: {key: [["pool", 6.0], ["lock", 0.0]]}}, [filtered]
    )
    assert run(filtered, loaded, [60]) == {(("kind", "lock"),): [None], (("kind", "pool"),): [0.1]}
    assert run("1 - (2 / 4) / 0.001", source({}, []), [0]) == -499.0


def test_an_unsupported_query_is_refused_at_parse_time() -> None:
    for expr in ("rate(x[1m])", "sum without (a) (rate(x[1m]))", "topk(3, sum(x))"):
        with pytest.raises(UnsupportedQuery):
            parse(expr)


def test_every_panel_of_the_dashboard_evaluates_over_a_real_snapshot() -> None:
    telemetry = Telemetry(Settings())
    metrics = telemetry.metrics
    metrics.http_requests.labels("GET", "/a", "200").inc(7)
    metrics.http_requests.labels("GET", "/a", "500").inc(1)
    duration = metrics.http_duration.labels("GET", "/a")
    assert isinstance(duration, HistogramSeries)
    duration.observe(0.2)
    metrics.api_cost.labels("sim", "sim-1").inc(0.25)
    metrics.api_tokens.labels("sim", "sim-1", "input").inc(100)
    exprs = [t.expr for row in ROWS for p in row.panels for t in p.targets]
    leaves = leaves_of(exprs)
    sample = measure(telemetry.snapshot(), leaves)
    assert decode(encode(sample)) == sample
    loaded = Loaded(leaves)
    loaded.add("run-a", 100, measure(Telemetry(Settings()).snapshot(), leaves))  # the run's start: zeros
    loaded.add("run-a", 160, sample)
    for row in ROWS:
        for panel in row.panels:
            for target in panel.targets:
                result = run(target.expr, loaded, [160])
                assert isinstance(result, dict | float), panel.title
    requests = 'sum(increase(http_requests_total{job=~"$job", instance=~"$instance"}[$__range]))'
    assert run(requests, loaded, [160]) == {(): [8.0]}
    error_ratio = next(p for p in PANELS if p.title == "Error Ratio").targets[0].expr
    assert only(run(error_ratio, loaded, [160])) == [pytest.approx(1 / 8)]
    cost = next(p for p in PANELS if p.title == "API Cost").targets[0].expr
    # Per run, then summed by the panel's labels (the run is gone): $0.25 in 60 s is $15 an hour.
    result = run(cost, loaded, [160])
    assert isinstance(result, dict)
    assert list(result) == [(("model", "sim-1"), ("provider", "sim"))]
    assert only(result) == [pytest.approx(15.0)]
    telemetry.close()


def test_the_console_and_grafana_read_one_definition() -> None:
    """Each Grafana target is the panel definition's PromQL; the console sends that text with only the
    variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    grafana = [(p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
    defined = [(p.title, t.expr) for row in ROWS for p in row.panels for t in p.targets]
    assert grafana == defined
    seed = [p.title for p in PANELS[:13]]
    assert seed == [p["title"] for p in board["panels"][:13]]
    for title, expr in defined:
        sent = promql_for(expr, window=rate_window(15), range_=3600)
        assert "$" not in sent, title
        assert sent.replace("[60s]", "[$__rate_interval]").replace("[3600s]", "[$__range]") == expr.replace(
            'job=~"$job", instance=~"$instance", ', ""
        ).replace('{job=~"$job", instance=~"$instance"}', ""), title


def test_legends_follow_grafana() -> None:
    labels = (("agent_type", "support"), ("status", "ok"))
    assert legend("{{agent_type}} {{status}}", labels) == "support ok"
    assert legend("{{ missing }}", labels) == ""
    assert legend("__auto", (("instance", "x"),)) == "value"
    assert math.isfinite(rate_window(300))
