from __future__ import annotations

import pytest

from agentic_backend.metricstore.exposition import render
from agentic_backend.metricstore.families import (
    OVERFLOW_LABEL_VALUE,
    HistogramSeries,
    MetricSpec,
    MetricType,
    SeriesLimitReached,
)
from agentic_backend.metricstore.registry import SERIES_OVERFLOW, Registry
from agentic_backend.metricstore.storage import PAGE_SLOTS, LocalPages
from agentic_backend.monitoring.catalogue import CATALOGUE, BuiltinMetrics
from tests.helpers import samples, value

SEED_METRICS = {
    "http_requests_total": ("counter", ("method", "endpoint", "status")),
    "http_request_duration_seconds": ("histogram", ("method", "endpoint")),
    "agent_queries_total": ("counter", ("agent_type", "status")),
    "agent_query_duration_seconds": ("histogram", ("agent_type",)),
    "api_cost_dollars_total": ("counter", ("provider", "model")),
    "api_tokens_total": ("counter", ("provider", "model", "type")),
    "cache_operations_total": ("counter", ("operation", "result")),
    "cache_size_bytes": ("gauge", ()),
    "auth_attempts_total": ("counter", ("method", "result")),
    "permission_checks_total": ("counter", ("permission", "result")),
    "active_sessions": ("gauge", ()),
    "active_requests": ("gauge", ()),
}


def registry(max_series: int = 100) -> Registry:
    return Registry(LocalPages(), max_series_per_metric=max_series)


def test_catalogue_declares_exactly_the_seed_metrics_with_their_types_and_labels() -> None:
    declared = {spec.name: (spec.type.value, spec.labelnames) for spec in CATALOGUE}
    assert {k: v for k, v in declared.items() if k in SEED_METRICS} == SEED_METRICS
    assert set(declared) - set(SEED_METRICS) == {
        "agentic_backend_build_info",
        "auth_failures_total",
        "agent_query_steps",
        "agent_tool_calls_total",
        "llm_request_duration_seconds",
        "llm_errors_total",
        "api_unpriced_calls_total",
        "cache_saved_dollars_total",
        "agentic_backend_worker_exits_total",
        "agent_time_to_first_token_seconds",
        "agent_time_per_output_token_seconds",
        "llm_time_to_first_token_seconds",
        "llm_time_per_output_token_seconds",
        "event_loop_lag_seconds",
        "event_loop_late_seconds",
        "database_wait_seconds",
        "agent_overhead_seconds",
    }


def test_agent_duration_buckets_reach_two_minutes() -> None:
    spec = next(s for s in CATALOGUE if s.name == "agent_query_duration_seconds")
    assert max(spec.buckets) >= 120
    assert list(spec.buckets) == sorted(set(spec.buckets))


def test_every_metric_is_exported_from_start_up() -> None:
    reg = registry()
    BuiltinMetrics.register(reg)
    text = render(reg.snapshot())
    for name in SEED_METRICS:
        assert f"# TYPE {name} " in text
    assert value(text, "active_requests") == 0.0
    assert value(text, "cache_operations_total", operation="get", result="hit") == 0.0
    assert value(text, "auth_attempts_total", method="api_key", result="failure") == 0.0


def test_counter_gauge_and_histogram_values() -> None:
    reg = registry()
    counter = reg.register(MetricSpec("jobs_total", MetricType.COUNTER, "Jobs.", ("kind",)))
    gauge = reg.register(MetricSpec("queue_depth", MetricType.GAUGE, "Depth."))
    hist = reg.register(MetricSpec("wait_seconds", MetricType.HISTOGRAM, "Wait.", (), (0.1, 1.0)))
    counter.labels("a").inc()
    counter.labels("a").inc(2.5)
    gauge.labels().set(7)
    gauge.labels().dec(2)
    series = hist.labels()
    assert isinstance(series, HistogramSeries)
    for observation in (0.05, 0.1, 0.5, 3.0):
        series.observe(observation)
    got = samples(render(reg.snapshot()))
    assert got[("jobs_total", frozenset({("kind", "a")}))] == 3.5
    assert got[("queue_depth", frozenset())] == 5.0
    # 0.1 lands in le="0.1": buckets are "less than or equal".
    assert got[("wait_seconds_bucket", frozenset({("le", "0.1")}))] == 2.0
    assert got[("wait_seconds_bucket", frozenset({("le", "1.0")}))] == 3.0
    assert got[("wait_seconds_bucket", frozenset({("le", "+Inf")}))] == 4.0
    assert got[("wait_seconds_count", frozenset())] == 4.0
    assert got[("wait_seconds_sum", frozenset())] == pytest.approx(3.65)
    assert series.count() == 4.0


def test_a_full_family_folds_new_label_sets_into_one_overflow_series_and_counts_them() -> None:
    reg = registry(max_series=3)
    family = reg.register(MetricSpec("hits_total", MetricType.COUNTER, "Hits.", ("user",)))
    for i in range(10):
        family.labels(f"user-{i}").inc()
    assert len(family) == 4  # three real series and the overflow series
    text = render(reg.snapshot())
    assert value(text, "hits_total", user=OVERFLOW_LABEL_VALUE) == 7.0
    assert value(text, SERIES_OVERFLOW.name, metric="hits_total") == 7.0
    # The existing series keep counting.
    family.labels("user-0").inc()
    assert value(render(reg.snapshot()), "hits_total", user="user-0") == 2.0


def test_a_strict_family_refuses_instead_of_folding() -> None:
    reg = registry(max_series=2)
    family = reg.register(MetricSpec("x_total", MetricType.COUNTER, "X.", ("k",)), strict=True)
    family.labels("a")
    family.labels("b")
    with pytest.raises(SeriesLimitReached):
        family.labels("c")


def test_wrong_label_count_is_a_programming_error() -> None:
    family = registry().register(MetricSpec("y_total", MetricType.COUNTER, "Y.", ("a", "b")))
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("only-one")


def test_duplicate_registration_is_refused() -> None:
    reg = registry()
    reg.register(MetricSpec("z", MetricType.GAUGE, "Z."))
    with pytest.raises(ValueError, match="already registered"):
        reg.register(MetricSpec("z", MetricType.GAUGE, "Z."))


def test_series_spill_onto_new_pages_and_keep_their_values() -> None:
    reg = registry(max_series=10 * PAGE_SLOTS)
    family = reg.register(MetricSpec("many_total", MetricType.COUNTER, "Many.", ("i",)))
    count = 2 * PAGE_SLOTS + 5
    for i in range(count):
        family.labels(str(i)).inc(i)
    got = samples(render(reg.snapshot()))
    assert len([k for k in got if k[0] == "many_total"]) == count
    assert got[("many_total", frozenset({("i", str(count - 1))}))] == count - 1
