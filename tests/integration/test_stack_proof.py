"""Proof on real data: the service, the traffic generator, and the monitoring stack run from monitoring/ by
`agentic-backend stack up` (real Prometheus and Alertmanager, receivers pointed at a webhook here).

Every dashboard panel query and every recording rule returns plausible data; Prometheus' cost equals the
ledger's; then the sim provider fails every call and the error alert reaches the webhook through
Alertmanager, and the service stops and the target-down alert reaches it.

The stack runs in its test mode (``fast``): scrape and evaluate every second, alerts fire without waiting
out their ``for`` and Alertmanager does not batch. The rule expressions are the committed ones; their
``for`` durations are covered by promtool's unit tests (tests/monitoring_stack/alerts_test.yml and alerts_slow_test.yml).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import yaml

from agentic_backend import stack
from agentic_backend.loadgen import generate
from tests.helpers import MONITORING
from tests.integration.harness import (
    Service,
    Webhook,
    check_plausible,
    panel_queries,
    query,
    require_binary,
    stack_options,
    values,
    wait_until,
)

pytestmark = pytest.mark.integration


def recording_rules() -> list[str]:
    names = []
    for path in sorted((MONITORING / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["record"] for rule in group["rules"]]
    return names


def test_monitoring_stack_on_real_traffic(tmp_path: Path, webhook: Webhook) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    service = Service(tmp_path / "service")
    options = stack_options(MONITORING, tmp_path / "stack", service, receiver_base=webhook.url)
    running = stack.up(options)
    prometheus = running.url("prometheus")
    try:
        # The pipeline works end to end before anything else: the Watchdog reaches its receiver.
        wait_until(lambda: webhook.alerts("Watchdog"), timeout=30, what="the Watchdog notification")
        assert any(path == "/watchdog" for path, _, _ in webhook.received)

        stats = asyncio.run(generate(service.url, service.admin_key, rate=40, duration=8, quiet=True))
        assert sum(stats.outcomes.values()) > 200

        # Costs and tokens in Prometheus equal the ledger's once the last scrape is in.
        usage = httpx.get(f"{service.url}/api/v1/usage", headers=service.headers, params={"limit": 0}).json()
        ledger = usage["totals"]
        assert ledger["cost_dollars"] > 0

        def cost_scraped() -> bool:
            scraped = values(query(prometheus, 'sum(api_cost_dollars_total{job="agentic-backend"})'))
            return bool(scraped) and scraped[0] == pytest.approx(ledger["cost_dollars"], rel=1e-9)

        wait_until(cost_scraped, timeout=20, what="Prometheus' cost to equal the ledger's")
        tokens = {
            series["metric"]["type"]: float(series["value"][1])
            for series in query(prometheus, "sum by (type) (api_tokens_total)")
        }
        billed = {kind: tokens[kind] for kind in ("input", "output")}  # cache and reasoning: parts of these
        assert billed == {"input": ledger["input_tokens"], "output": ledger["output_tokens"]}
        # Restart the service mid-run (same data): the counters start again at zero, and the dashboard's
        # totals still show the whole time range, as the ledger does. A raw sum would drop here.
        service.stop()
        service = Service(tmp_path / "service", port=service.port, admin_key=service.admin_key)
        stats = asyncio.run(generate(service.url, service.admin_key, rate=40, duration=5, quiet=True))
        assert sum(stats.outcomes.values()) > 100
        ledger = httpx.get(
            f"{service.url}/api/v1/usage", headers=service.headers, params={"limit": 0}
        ).json()["totals"]
        (total_cost,) = [expr for title, _, expr in panel_queries() if title == "Total Cost"]
        assert "increase(" in total_cost

        def total_cost_matches_the_ledger() -> bool:
            raw = values(query(prometheus, 'sum(api_cost_dollars_total{job="agentic-backend"})'))
            panel = values(query(prometheus, total_cost))
            assert raw[0] < ledger["cost_dollars"] * 0.9, "the restart reset the counters"
            # increase() extrapolates to the range's end by up to a scrape interval of the rate.
            return bool(panel) and panel[0] == pytest.approx(ledger["cost_dollars"], rel=0.05)

        wait_until(total_cost_matches_the_ledger, timeout=20, what="Total Cost to equal the ledger's")
        time.sleep(3)  # a few evaluations of the recording rules over the finished traffic

        for title, unit, expr in panel_queries():
            check_plausible(title, unit, values(query(prometheus, expr)))
        for name in recording_rules():
            numbers = values(query(prometheus, name))
            check_plausible(name, "percentunit" if "ratio" in name else "short", numbers)
        hit_ratio = values(query(prometheus, "job:cache_get_hits:ratio_rate15m"))[0]
        assert 0 < hit_ratio < 1, "loadgen repeats some queries and asks new ones"
        assert not query(prometheus, 'ALERTS{alertname="HighErrorRate"}'), "healthy traffic does not alert"

        # Break the provider: the service restarts with sim failing every call (same port, same data).
        service.stop()
        service = Service(
            tmp_path / "service",
            port=service.port,
            admin_key=service.admin_key,
            env={"AGENTIC_SIM_FAILURE_RATE": "1"},
        )
        broken_at = time.time()
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=10) as client:
            deadline = time.monotonic() + 60
            while not webhook.alerts("HighErrorRate", since=broken_at) and time.monotonic() < deadline:
                response = client.post("/api/v1/agents/assistant/query", json={"query": f"q {time.time()}"})
                assert response.status_code >= 500, response.text
        (alert,) = webhook.alerts("HighErrorRate", since=broken_at)[:1]
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"] == "docs/runbook.md#higherrorrate"
        assert any(path == "/pager" for path, at, _ in webhook.received if at >= broken_at)

        # Stop the service: the target-down alert reaches the pager.
        service.stop()
        stopped_at = time.time()
        wait_until(
            lambda: webhook.alerts("TargetDown", since=stopped_at),
            timeout=60,  # it came, a little after 30 s, once in a full run on both cores (2026-12-03)
            what="the TargetDown notification",
        )
    finally:
        service.stop()
        stack.down(options.run_dir)
