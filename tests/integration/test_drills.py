"""Fault drills on real processes with traffic running: for each dependency that fails, what the client
sees, what /health says, what the metrics say, which alert reaches Alertmanager's webhook (the committed
rules, run by `stack up` in test mode: `for:` shortened, which promtool's unit tests cover), and that
nothing is lost after recovery: a ledger row for every query answered 200, and no counter ever went
backwards in Prometheus (resets() over the run is 0 for every counter-like series).

Each drill prints what it measured (`pytest -s`, or the captured output of a failure); the README's
reliability section gives the figures. docs/runbook.md says what the operator sees and does per fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from agentic_backend import stack
from tests.integration.faults import (
    PostgresCluster,
    counter_resets,
    report,
    traffic,
    wait_for_alert,
)
from tests.integration.harness import Service, Webhook, require_binary, stack_options, wait_until
from tests.unit.monitoring.helpers import samples

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
QUERY_ENDPOINT = "/api/v1/agents/{agent_type}/query"


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    yield cluster
    cluster.destroy()


def http_counts(service: Service) -> dict[str, float]:
    """http_requests_total of the query route, by status, as the service exports it."""
    text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for (name, labels), count in samples(text).items():
        found = dict(labels)
        if name == "http_requests_total" and found.get("endpoint") == QUERY_ENDPOINT:
            counts[found["status"]] = counts.get(found["status"], 0) + count
    return counts


def ledger_request_ids(url: str) -> set[str]:
    async def read() -> set[str]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = await connection.fetch("SELECT request_id FROM usage_records WHERE status = 'success'")
        finally:
            await connection.close()
        return {row["request_id"] for row in rows}

    return asyncio.run(read())


def start_stack(tmp_path: Path, service: Service, webhook: Webhook) -> tuple[stack.StackOptions, str]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    options = stack_options(MONITORING, tmp_path / "stack", service, receiver_base=webhook.url)
    running = stack.up(options)
    prometheus = running.url("prometheus")
    wait_until(lambda: webhook.alerts("Watchdog"), timeout=30, what="the Watchdog notification")
    return options, prometheus


def no_counter_went_backwards(prometheus: str) -> None:
    time.sleep(2)  # the last scrapes are in
    assert counter_resets(prometheus) == {}, "a counter went backwards in Prometheus' view"


def test_postgresql_stopped_and_restarted(
    tmp_path: Path, webhook: Webhook, postgres: PostgresCluster
) -> None:
    service = Service(tmp_path / "service", env={"AGENTIC_DATABASE_URL": postgres.url})
    options, prometheus = start_stack(tmp_path, service, webhook)
    try:
        with traffic(service.url, service.admin_key) as sender:
            wait_until(lambda: sender.statuses()[200] >= 20, timeout=30, what="healthy answers")
            postgres.stop()
            stopped = time.time()
            wait_until(lambda: sender.statuses(stopped)[503] >= 10, timeout=30, what="503 answers")
            health = httpx.get(f"{service.url}/api/v1/monitoring/health", timeout=10)
            during = http_counts(service)
            alert_after = wait_for_alert(
                lambda: webhook.alerts("HighErrorRate", since=stopped), "HighErrorRate"
            )
            postgres.start()
            restarted = time.time()
            wait_until(
                lambda: sender.statuses(restarted)[200] >= 20, timeout=60, what="answers after recovery"
            )
            recovered_after = (
                min(a.at for a in sender.answers if a.at >= restarted and a.status == 200) - restarted
            )
        outage: list[Any] = [a for a in sender.answers if stopped <= a.at <= restarted and a.status != 200]
        # What the client saw: a JSON 503 with Retry-After, never a plain-text 500 or a dropped connection.
        assert outage, "the outage was seen by the clients"
        assert {a.status for a in outage} == {503}, sender.statuses(stopped, restarted)
        assert all(a.content_type == "application/json" and a.retry_after for a in outage)
        assert {a.body["error"] for a in outage} == {"StorageUnavailable"}
        assert health.status_code == 503
        assert health.json()["components"]["database"]["status"] == "down"
        # What the metrics said: the 503s as 503s (the old code counted them as 499 client disconnects).
        assert during.get("503", 0) >= 10
        assert "499" not in during
        assert "500" not in during
        after = http_counts(service)
        assert after.get("503") == sender.statuses()[503], (after, sender.statuses())
        # Nothing lost: every query answered 200 has its ledger row; no counter went backwards.
        answered = sender.answered()
        missing = set(answered) - ledger_request_ids(postgres.url)
        assert missing == set(), f"{len(missing)} answered queries have no ledger row"
        no_counter_went_backwards(prometheus)
        report(
            "PostgreSQL stopped and restarted",
            {
                "answers": dict(sender.statuses()),
                "during the outage": dict(sender.statuses(stopped, restarted)),
                "HighErrorRate at the webhook after (s)": f"{alert_after:.1f}",
                "first 200 after the restart (s)": f"{recovered_after:.1f}",
                "answered 200 without a ledger row": len(missing),
                "counter resets": 0,
            },
        )
    finally:
        service.stop()
        stack.down(options.run_dir)
