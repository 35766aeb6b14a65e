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
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from agentic_backend import stack
from tests.helpers import MONITORING, samples, total
from tests.integration.faults import (
    PostgresCluster,
    RedisServer,
    counter_resets,
    report,
    traffic,
    wait_for_alert,
)
from tests.integration.harness import (
    LOOPBACK,
    Prometheus,
    Service,
    SimLLM,
    Webhook,
    children,
    require_binary,
    scrape_config,
    stack_options,
    wait_until,
)

pytestmark = pytest.mark.integration

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


LEDGER_SUCCESSES = "SELECT request_id FROM usage_records WHERE status = 'success'"


def ledger_request_ids(url: str) -> set[str]:
    """Request ids of the successful queries in the ledger of a PostgreSQL URL or a SQLite file."""
    if url.startswith("sqlite") or url.endswith(".db"):
        with sqlite3.connect(url.rpartition("///")[2] if "///" in url else url) as connection:
            return {row[0] for row in connection.execute(LEDGER_SUCCESSES)}

    async def read() -> set[str]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = await connection.fetch(LEDGER_SUCCESSES)
        finally:
            await connection.close()
        return {row["request_id"] for row in rows}

    return asyncio.run(read())


def metric_sum(service: Service, name: str, **labels: str) -> float:
    return total(httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text, name, **labels)


def start_stack(tmp_path: Path, service: Service, webhook: Webhook) -> tuple[stack.StackOptions, str]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    options = stack_options(MONITORING, tmp_path / "stack", service, receiver_base=webhook.url)
    running = stack.up(options)
    prometheus = running.url("prometheus")
    wait_until(lambda: webhook.alerts("Watchdog"), timeout=30, what="the Watchdog notification")
    return options, prometheus


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


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


def test_postgresql_hung_answers_503_within_the_timeout(tmp_path: Path, postgres: PostgresCluster) -> None:
    """A server that hangs keeps its sockets open: no error ever comes by itself. Every statement, connection
    attempt and wait for a pooled connection has AGENTIC_DATABASE_TIMEOUT_SECONDS, so the clients get a
    JSON 503 in that time rather than waiting for good, and the service is back when the server is."""
    timeout = 2.0
    env = {"AGENTIC_DATABASE_URL": postgres.url, "AGENTIC_DATABASE_TIMEOUT_SECONDS": str(timeout)}
    service = Service(tmp_path / "service", env=env)
    url = f"{service.url}/api/v1/agents/calculator/query"

    def ask(n: int) -> tuple[int, float, httpx.Response]:
        started = time.monotonic()
        answer = httpx.post(url, json={"query": f"what is {n}+1?"}, headers=service.headers, timeout=60)
        return answer.status_code, time.monotonic() - started, answer

    try:
        assert ask(0)[0] == 200
        postgres.freeze()
        try:
            with ThreadPoolExecutor(4) as pool:  # more at once than a single connection serves
                hung = list(pool.map(ask, range(1, 5)))
            health = httpx.get(f"{service.url}/api/v1/monitoring/health", timeout=30)
        finally:
            postgres.thaw()
        thawed = time.monotonic()
        wait_until(lambda: ask(9)[0] == 200, timeout=30, what="answers once the server runs again")
        back_after = time.monotonic() - thawed
        counts = http_counts(service)
        statuses = [status for status, _, _ in hung]
        assert statuses == [503] * 4, [r.text for _, _, r in hung]
        assert all(
            r.headers["content-type"] == "application/json" and r.headers.get("retry-after")
            for _, _, r in hung
        )
        assert {r.json()["error"] for _, _, r in hung} == {"StorageUnavailable"}
        slowest = max(seconds for _, seconds, _ in hung)
        assert slowest < 6 * timeout, slowest  # a timeout per database step the failing query takes
        assert health.status_code == 503
        assert health.json()["components"]["database"]["status"] == "down"
        assert counts.get("503") == 4, counts  # counted as the clients got them: never 499 or 500
        report(
            "PostgreSQL hung (SIGSTOP) and resumed",
            {
                "AGENTIC_DATABASE_TIMEOUT_SECONDS": timeout,
                "answers while hung": statuses,
                "slowest 503 (s)": f"{slowest:.1f}",
                "first 200 after it resumed (s)": f"{back_after:.1f}",
            },
        )
    finally:
        service.stop()


def test_redis_stopped_and_restarted(tmp_path: Path, webhook: Webhook) -> None:
    redis = RedisServer(tmp_path / "redis")
    service = Service(tmp_path / "service", env={"AGENTIC_REDIS_URL": redis.url})
    options, prometheus = start_stack(tmp_path, service, webhook)
    try:
        with traffic(service.url, service.admin_key) as sender:
            wait_until(lambda: sender.statuses()[200] >= 20, timeout=30, what="healthy answers")
            assert metric_sum(service, "cache_operations_total", result="error") == 0
            redis.stop()
            stopped = time.time()
            wait_until(
                lambda: metric_sum(service, "cache_operations_total", result="error") >= 20,
                timeout=30,
                what="cache errors counted",
            )
            health = httpx.get(f"{service.url}/api/v1/monitoring/health", timeout=10)
            alert_after = wait_for_alert(
                lambda: webhook.alerts("CacheBackendErrors", since=stopped), "CacheBackendErrors"
            )
            errors_during = metric_sum(service, "cache_operations_total", result="error")
            redis.start()
            restarted = time.time()
            sets_before = metric_sum(service, "cache_operations_total", operation="set", result="ok")
            wait_until(
                lambda: (
                    metric_sum(service, "cache_operations_total", operation="set", result="ok")
                    > sets_before + 5
                ),
                timeout=30,
                what="the cache to work again",
            )
        # The client never noticed: every query answered, uncached, while Redis was away.
        assert set(sender.statuses()) == {200}, sender.statuses()
        assert sender.statuses(stopped, restarted)[200] >= 10
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["components"]["cache"]["status"] == "degraded"
        assert errors_during >= 20
        missing = set(sender.answered()) - ledger_request_ids(
            str(tmp_path / "service" / "data" / "agentic.db")
        )
        assert missing == set()
        no_counter_went_backwards(prometheus)
        report(
            "Redis stopped and restarted",
            {
                "answers": dict(sender.statuses()),
                "answered while Redis was away": sender.statuses(stopped, restarted)[200],
                "cache errors counted": errors_during,
                "CacheBackendErrors at the webhook after (s)": f"{alert_after:.1f}",
                "answered 200 without a ledger row": len(missing),
                "counter resets": 0,
            },
        )
    finally:
        service.stop()
        redis.stop()
        stack.down(options.run_dir)


def test_the_provider_rate_limiting_slow_failing_and_killed(tmp_path: Path, webhook: Webhook) -> None:
    sim_llm = SimLLM(tmp_path / "sim-llm")
    agents = tmp_path / "agents.json"
    agent = {"name": "oai", "provider": "openai", "model": "gpt-4o-mini", "timeout_seconds": 1.5}
    agents.write_text(json.dumps([agent]))
    env = {
        "AGENTIC_AGENTS_FILE": str(agents),
        "AGENTIC_OPENAI_API_KEY": "sk-drill-secret-value",
        "AGENTIC_OPENAI_BASE_URL": f"{sim_llm.url}/v1",
        "AGENTIC_PROVIDER_TIMEOUT_SECONDS": "1",
        "AGENTIC_PROVIDER_MAX_RETRIES": "0",
    }
    service = Service(tmp_path / "service", env=env)
    options, prometheus = start_stack(tmp_path, service, webhook)
    phases: dict[str, tuple[float, float]] = {}
    try:
        with traffic(service.url, service.admin_key, agent="oai") as sender:
            wait_until(lambda: sender.statuses()[200] >= 10, timeout=30, what="healthy answers")
            began = time.time()
            for phase, directive, status in (
                ("rate-limited", "#fail:rate_limit", 429),
                ("slow (past the timeout)", "#fail:timeout", 504),
                ("failing", "#fail:server", 502),
            ):
                sender.suffix = directive
                start = time.time()
                wait_until(
                    lambda s=start, c=status: sender.statuses(s)[c] >= 5,
                    timeout=30,
                    what=f"{phase}: {status} answers",
                )
                phases[phase] = (start, time.time())
            sender.suffix = ""
            sim_llm.stop()  # killed: connections refused
            killed = time.time()
            wait_until(
                lambda: sender.statuses(killed)[502] >= 5, timeout=30, what="answers with sim-llm dead"
            )
            alert_after = wait_for_alert(
                lambda: webhook.alerts("AgentQueryErrors", since=began), "AgentQueryErrors"
            )
            wait_for_alert(lambda: webhook.alerts("HighErrorRate", since=began), "HighErrorRate")
            phases["killed"] = (killed, time.time())
            sim_llm = SimLLM(tmp_path / "sim-llm-again", port=sim_llm.port)
            restarted = time.time()
            wait_until(
                lambda: sender.statuses(restarted)[200] >= 10, timeout=30, what="answers after recovery"
            )
        errors = {
            dict(labels)["kind"]: count
            for (name, labels), count in samples(
                httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
            ).items()
            if name == "llm_errors_total" and count
        }
        # What the client saw in each phase: a JSON error of that phase's class, never a 500.
        for phase, (start, end) in phases.items():
            seen = sender.statuses(start, end)
            assert 500 not in seen, (phase, seen)
            assert 0 not in seen, (phase, seen)
        assert all(a.body and "error" in a.body for a in sender.answers if a.status != 200)
        # The provider's Retry-After (sim-llm sends 2 s, as real providers send theirs) reaches the client.
        assert {a.retry_after for a in sender.answers if a.status == 429} == {"2"}
        assert {"rate_limit", "timeout", "server"} <= errors.keys(), errors
        assert errors.get("connection", 0) + errors.get("server", 0) >= 10, errors
        missing = set(sender.answered()) - ledger_request_ids(
            str(tmp_path / "service" / "data" / "agentic.db")
        )
        assert missing == set()
        assert "sk-drill-secret-value" not in service.log()
        no_counter_went_backwards(prometheus)
        report(
            "the provider rate-limiting, slow, failing and killed (OpenAI adapter over sim-llm)",
            {
                **{phase: dict(sender.statuses(*span)) for phase, span in phases.items()},
                "llm_errors_total by kind": errors,
                "AgentQueryErrors at the webhook after (s)": f"{alert_after:.1f}",
                "answered 200 without a ledger row": len(missing),
                "counter resets": 0,
            },
        )
    finally:
        service.stop()
        sim_llm.stop()
        stack.down(options.run_dir)


def worker_answering(local_port: int, workers: list[int]) -> int:
    """The worker process whose socket is the server end of the client connection from ``local_port``."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{local_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    owners = {int(pid) for pid in re.findall(r"pid=(\d+)", out)} & set(workers)
    assert len(owners) == 1, (out, workers)
    return owners.pop()


def kill_a_worker_mid_scrape(service: Service) -> bool:
    """Send a scrape and SIGKILL the worker answering it while it sends the body. True if the scrape was
    cut. The worker is known before the request is sent (the one that accepted the connection), and the
    kill follows the answer's first byte at once: the merge is done and the ~1 MB body is being rendered
    and streamed. The client reads nothing more until then, through a small receive buffer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(10)
        sock.connect((LOOPBACK, service.port))
        victim = wait_until(
            lambda: worker_answering(sock.getsockname()[1], children(service.popen.pid)),
            timeout=5,
            what="the worker that accepted the connection",
            interval=0.001,
        )
        sock.sendall(
            b"GET /api/v1/monitoring/metrics HTTP/1.1\r\nHost: drill\r\n"
            b"Accept: application/openmetrics-text\r\n\r\n"
        )
        received = sock.recv(1)
        os.kill(victim, signal.SIGKILL)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return not received.endswith(b"0\r\n\r\n")  # a chunked body ends with its zero-length chunk


def test_workers_killed_under_load_and_mid_scrape_with_an_ha_pair_scraping(
    tmp_path: Path, webhook: Webhook
) -> None:
    metrics = tmp_path / "metrics"
    service = Service(tmp_path / "service", workers=4, env={"AGENTIC_METRICS_MULTIPROCESS_DIR": str(metrics)})

    def four_ready() -> bool:
        """Four workers, each with its metric files: a replacement killed while it still starts up has
        counted nothing and is no exit of the archive's (nor one the drill means to make)."""
        pids = children(service.popen.pid)
        journaled = {path.name.split("-")[1] for path in metrics.glob("agentic-metrics-*/w-*.journal")}
        return len(pids) == 4 and {str(pid) for pid in pids} <= journaled

    wait_until(four_ready, timeout=30, what="four workers")
    # A registry large enough that a scrape takes a while: a kill can land while it is being answered.
    # (About 1 MB: more than the kernel buffers between the worker and a client that reads slowly.)
    for metric in range(4):
        records = [
            {
                "metric_type": "gauge",
                "name": f"drill_depth_{metric}",
                "value": i,
                "labels": {"q": f"{i:0200d}"},
            }
            for i in range(1000)
        ]
        response = httpx.post(
            f"{service.url}/api/v1/monitoring/record", json=records, headers=service.headers, timeout=30
        )
        assert response.status_code == 200, response.text
    options, prometheus = start_stack(tmp_path, service, webhook)
    twin = Prometheus(tmp_path / "twin", scrape_config(f"{LOOPBACK}:{service.port}"))  # the HA pair's other
    kills, cut_scrapes = 0, 0
    try:
        with traffic(service.url, service.admin_key) as sender:
            wait_until(lambda: sender.statuses()[200] >= 20, timeout=30, what="healthy answers")
            began = time.time()
            for round_ in range(6):
                if round_ % 2:
                    cut_scrapes += kill_a_worker_mid_scrape(service)
                else:
                    os.kill(children(service.popen.pid)[0], signal.SIGKILL)  # under load
                kills += 1
                wait_until(four_ready, timeout=30, what="a replacement, started")
                time.sleep(1.5)  # both Prometheus servers scrape in between
            alert_after = wait_for_alert(
                lambda: webhook.alerts("WorkerRestarts", since=began), "WorkerRestarts"
            )
            time.sleep(2)
        text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
        exits = sum(c for (n, _), c in samples(text).items() if n == "agentic_backend_worker_exits_total")
        counts = http_counts(service)
        # The clients: answered, or (the requests a killed worker held) cut; never a 5xx for a death.
        statuses = sender.statuses()
        assert set(statuses) <= {200, 0}, statuses
        assert statuses[0] <= kills, statuses
        assert "499" not in counts
        assert "500" not in counts
        assert exits == kills
        assert cut_scrapes >= 1, "at least one kill landed while its worker was answering a scrape"
        missing = set(sender.answered()) - ledger_request_ids(
            str(tmp_path / "service" / "data" / "agentic.db")
        )
        assert missing == set()
        # Both servers of the HA pair saw every counter only grow, and agree on the totals.
        assert counter_resets(prometheus) == {}
        assert counter_resets(twin.url) == {}
        total = 'sum(http_requests_total{job="agentic-backend"})'
        ours, theirs = (float(q(total)[0]["value"][1]) for q in (lambda e: query(prometheus, e), twin.query))
        assert abs(ours - theirs) <= 0.05 * ours + 10, (ours, theirs)  # a scrape apart at most
        report(
            "workers of serve --workers 4 SIGKILLed, under load and mid-scrape, an HA pair scraping",
            {
                "workers killed": kills,
                "of them mid-scrape, the scrape cut": cut_scrapes,
                "answers": dict(statuses),
                "agentic_backend_worker_exits_total": exits,
                "WorkerRestarts at the webhook after (s)": f"{alert_after:.1f}",
                "answered 200 without a ledger row": len(missing),
                "counter resets (both servers)": 0,
                "http_requests_total in the pair": f"{ours:.0f} / {theirs:.0f}",
            },
        )
    finally:
        twin.stop()
        service.stop()
        stack.down(options.run_dir)


def test_prometheus_killed_and_restarted(tmp_path: Path) -> None:
    service = Service(tmp_path / "service")
    config = scrape_config(f"{LOOPBACK}:{service.port}")
    try:
        prometheus = Prometheus(tmp_path / "prometheus", config)
    except BaseException:
        service.stop()
        raise
    try:
        with traffic(service.url, service.admin_key) as sender:
            prometheus.wait_for('sum(http_requests_total{endpoint="/api/v1/agents/{agent_type}/query"}) > 10')
            answered_before_kill = sender.statuses()[200]
            prometheus.stop(signal.SIGKILL)  # no clean shutdown: the WAL replays at the next start
            killed = time.time()
            time.sleep(3)
            answered_while_away = sender.statuses(killed)[200]
            prometheus = Prometheus(tmp_path / "prometheus", config)  # the same TSDB folder
            restarted = time.time()
            after = prometheus.wait_for(
                'sum(rate(http_requests_total{endpoint="/api/v1/agents/{agent_type}/query"}[30s])) > 0',
                timeout=30,
            )
        # The service never noticed; Prometheus kept what it had, and the counters carried on from there.
        assert set(sender.statuses()) == {200}, sender.statuses()
        assert answered_while_away > 10
        # The service counted on while Prometheus was away: its first scrapes after the restart hold every
        # query answered before the kill and during the gap. (Prometheus itself may lose the last seconds
        # it had not written out when it was killed: that is its WAL's promise, not ours.)
        seen = query(prometheus.url, 'sum(http_requests_total{endpoint="/api/v1/agents/{agent_type}/query"})')
        assert float(seen[0]["value"][1]) >= answered_before_kill + answered_while_away
        no_counter_went_backwards(prometheus.url)
        report(
            "Prometheus SIGKILLed and restarted on its own data",
            {
                "answers": dict(sender.statuses()),
                "answered while Prometheus was away": answered_while_away,
                "request rate after the restart (req/s)": f"{float(after[0]['value'][1]):.1f}",
                "back after (s)": f"{restarted - killed:.1f}",
                "counter resets": 0,
            },
        )
    finally:
        prometheus.stop()
        service.stop()
