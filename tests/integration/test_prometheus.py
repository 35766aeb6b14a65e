"""The real service scraped by a real Prometheus: what the seed promises, queried the way a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import EXAMPLES
from tests.integration.harness import Prometheus, Service, require_binary, wait_until

pytestmark = pytest.mark.integration

# The seed's example queries, corrected where the seed was wrong (see the README):
SEED_QUERIES = {
    "request rate": "sum(rate(http_requests_total[1m]))",
    "average latency": "sum(rate(http_request_duration_seconds_sum[1m])) / sum(rate(http_request_duration_seconds_count[1m]))",
    # rate() is per second: the seed's rate(...[1h]) is not a cost per hour.
    "cost per hour": "sum(increase(api_cost_dollars_total[1h]))",
}


def send_traffic(service: Service, count: int = 20) -> None:
    with httpx.Client(base_url=service.url, timeout=5) as client:
        for _ in range(count):
            assert client.get("/api/v1/monitoring/health").status_code == 200
        assert client.get("/no/such/path").status_code == 404


def test_prometheus_scrapes_the_service(service: Service, prometheus: Prometheus) -> None:
    send_traffic(service)
    up = prometheus.wait_for('up{job="agentic-backend"} == 1')
    assert up[0]["value"][1] == "1"
    health = prometheus.wait_for(
        'http_requests_total{endpoint="/api/v1/monitoring/health",status="200"}',
        check=lambda r: bool(r) and float(r[0]["value"][1]) >= 20,
    )
    assert health[0]["metric"]["method"] == "GET"
    unmatched = prometheus.wait_for('http_requests_total{endpoint="__unmatched__"}')
    assert unmatched[0]["metric"]["status"] == "404"


def test_every_seed_metric_reaches_prometheus(service: Service, prometheus: Prometheus) -> None:
    send_traffic(service, 3)
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "cache_operations_total",
        "cache_size_bytes",
        "auth_attempts_total",
        "active_sessions",
        "active_requests",
        "agentic_backend_build_info",
    ):
        prometheus.wait_for(name)
    # Labelled metrics without traffic yet have their HELP and TYPE but no series; Prometheus' metadata
    # API knows them (under the OpenMetrics family name for counters).
    expected = {
        "agent_queries",
        "agent_query_duration_seconds",
        "api_cost_dollars",
        "api_tokens",
        "permission_checks",
    }

    def metadata_names() -> set[str]:
        return set(httpx.get(f"{prometheus.url}/api/v1/metadata", timeout=10).json()["data"])

    wait_until(lambda: expected <= metadata_names(), timeout=30, what="metric metadata")


def test_seed_example_queries_return_data(service: Service, prometheus: Prometheus) -> None:
    send_traffic(service, 30)
    prometheus.wait_for("http_requests_total")
    # rate() needs two scrapes in its window.
    rate = prometheus.wait_for(
        SEED_QUERIES["request rate"], check=lambda r: bool(r) and float(r[0]["value"][1]) > 0
    )
    assert float(rate[0]["value"][1]) > 0
    latency = prometheus.wait_for(SEED_QUERIES["average latency"])
    assert 0 < float(latency[0]["value"][1]) < 5
    quantile = prometheus.wait_for(
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))"
    )
    assert float(quantile[0]["value"][1]) > 0
    # The seed's hit-rate query divides by *all* cache operations (sets and deletes too), and its raw form
    # divides series with different labels; ours sums each side first and counts only gets.
    cache = prometheus.wait_for(
        'sum(rate(cache_operations_total{operation="get",result="hit"}[1m])) / sum(rate(cache_operations_total{operation="get"}[1m]))'
    )
    assert cache[0]["value"][1] == "NaN"  # the series exist from start-up, but no gets yet: 0/0
    # No model has been called yet: the cost series exist at zero from start-up (so that increase() counts
    # their first rise), and the query says $0 rather than nothing.
    cost = prometheus.wait_for(SEED_QUERIES["cost per hour"])
    assert float(cost[0]["value"][1]) == 0


def test_a_custom_metric_recorded_through_the_api_is_queryable(
    service: Service, prometheus: Prometheus
) -> None:
    response = httpx.post(
        f"{service.url}/api/v1/monitoring/record",
        json={
            "metric_type": "counter",
            "name": "custom_events_total",
            "value": 1,
            "labels": {"event_type": "signup"},
        },
        timeout=5,
        headers=service.headers,
    )
    assert response.status_code == 200
    found = prometheus.wait_for('custom_events_total{event_type="signup"}')
    assert found[0]["value"][1] == "1"
    httpx.post(
        f"{service.url}/api/v1/monitoring/record",
        json=[{"metric_type": "histogram", "name": "job_seconds", "value": v} for v in (0.2, 0.4, 3.0)],
        timeout=5,
        headers=service.headers,
    ).raise_for_status()
    count = prometheus.wait_for("job_seconds_count")
    assert count[0]["value"][1] == "3"


def test_promtool_accepts_the_exposition(service: Service, tmp_path: Path) -> None:
    """promtool lints the text format (it does not parse OpenMetrics; the unit tests check that with
    prometheus_client's strict parser, and Prometheus scrapes it in test_prometheus_negotiates_openmetrics)."""
    promtool = require_binary("promtool")
    send_traffic(service, 5)
    httpx.post(
        f"{service.url}/api/v1/monitoring/record",
        json=[
            {
                "metric_type": "counter",
                "name": "custom_events_total",
                "value": 2,
                "labels": {"event_type": 'we"ird\\\nvalue'},
            },
            {"metric_type": "gauge", "name": "queue_depth", "value": -3.5},
            {"metric_type": "histogram", "name": "job_duration_seconds", "value": 0.7},
        ],
        timeout=5,
        headers=service.headers,
    ).raise_for_status()
    text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=5).text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_negotiates_openmetrics(service: Service, prometheus: Prometheus) -> None:
    """Prometheus asks for OpenMetrics (and gzip) by default; its scrapes must succeed."""
    prometheus.wait_for('up{job="agentic-backend"} == 1')
    targets = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert targets[0]["health"] == "up", targets[0].get("lastError")
    samples = prometheus.wait_for('scrape_samples_scraped{job="agentic-backend"}')
    assert float(samples[0]["value"][1]) > 20
    # Prometheus asked for OpenMetrics: it shows as the counter's family name in its metadata.
    metadata = httpx.get(f"{prometheus.url}/api/v1/metadata", timeout=10).json()["data"]
    assert "http_requests" in metadata, sorted(metadata)


def test_every_class_of_hostile_record_leaves_the_openmetrics_scrape_healthy(
    service: Service, prometheus: Prometheus
) -> None:
    """The explicit examples of every collision and escape class (tests/helpers.py, run by
    tests/unit/metricstore/test_exposition_validity.py) recorded over HTTP: the refused ones are 4xx, and a real Prometheus
    negotiating OpenMetrics keeps scraping without an error."""
    refused = 0
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=5) as client:
        for batch, _ in EXAMPLES:
            for record in batch:
                response = client.post("/api/v1/monitoring/record", json=record)
                # One service for all: the outcome alone (asserted by the unit test) may differ here, as an
                # earlier example's metric can exist already; never a server error.
                assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
                refused += response.status_code != 200
    assert refused > 10
    # The escape case arrives intact: its label value holds quotes, backslashes, newlines and a NUL.
    found = prometheus.wait_for("esc")
    assert found[0]["metric"]["v"] == '\\"\n\r\t}{,=# EOF\x00\u2028'

    def healthy_after_the_records() -> bool:
        target = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"][0]
        assert target["health"] == "up", target.get("lastError")
        return not target.get("lastError")

    wait_until(healthy_after_the_records, timeout=10, what="a clean OpenMetrics scrape")
    assert prometheus.query('up{job="agentic-backend"}')[0]["value"][1] == "1"
