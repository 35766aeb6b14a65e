"""Real processes for integration tests: the service under uvicorn and Prometheus, on free loopback ports.

Each process runs in a temporary folder, is waited for with a deadline, and is always stopped. A binary
that is missing skips the test on a laptop but fails it in CI (``CI=true``), where .ci/run installs it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agentic_backend.stack import StackOptions
from tests.helpers import MONITORING, missing

LOOPBACK = "127.0.0.1"
# How long a service may take to answer its first /health. A deadline, not a measurement: idle, one worker
# answers in 2 s and four in 6 s; on a busy CI machine, beside another test's replicas, four workers have
# taken more than 30 s. A service that exits fails at once, whatever the deadline.
START_DEADLINE = 120


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (Debian package; .ci/run installs it)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (httpx.HTTPError, OSError, AssertionError, KeyError, IndexError) as exc:
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:g} s waiting for {what} (last error: {last_error!r})")


class Process:
    """A child process whose output goes to a log file that is shown if the test fails."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() signals the whole group: uvicorn's workers too
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self._log.close()


class Service(Process):
    """``agentic-backend serve`` as a user starts it."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        port: int | None = None,
        admin_key: str | None = None,
        access_log: bool = False,
        serve_args: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        args = [
            sys.executable,
            "-m",
            "agentic_backend",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
        ]
        args += ["--workers", str(workers), "--log-level", "warning"]
        if not access_log:
            args.append("--no-access-log")
        args += serve_args or []
        self.admin_key = admin_key or "integration-admin-key-" + os.urandom(16).hex()
        self.headers = {"authorization": f"Bearer {self.admin_key}"}
        base_env = {"AGENTIC_DATA_DIR": str(workdir / "data"), "AGENTIC_ADMIN_API_KEY": self.admin_key}
        super().__init__("service", args, workdir, {**base_env, **(env or {})})
        try:
            wait_until(self._ready, timeout=START_DEADLINE, what="the service to answer /health")
        except TimeoutError:
            self.stop()
            raise AssertionError(f"the service did not start:\n{self.log()}") from None

    def _ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"the service exited:\n{self.log()}")
        return httpx.get(f"{self.url}/api/v1/monitoring/health", timeout=2).status_code == 200


class Prometheus(Process):
    """A real Prometheus scraping the service every second."""

    def __init__(self, workdir: Path, config: str, *, extra_args: list[str] | None = None) -> None:
        binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(config)
        args = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
            *(extra_args or []),
        ]
        super().__init__("prometheus", args, workdir)
        try:
            wait_until(
                lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200,
                timeout=30,
                what="Prometheus to be ready",
            )
        except TimeoutError:
            self.stop()
            raise AssertionError(f"Prometheus did not start:\n{self.log()}") from None

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self, promql: str, *, timeout: float = 30, check: Callable[[list[dict[str, Any]]], bool] = bool
    ) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]] | None:
            result = self.query(promql)
            return result if check(result) else None

        try:
            found: list[dict[str, Any]] = wait_until(
                attempt, timeout=timeout, what=f"data for {promql}", interval=0.5
            )
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}\nlast result: {self.query(promql)}\nPrometheus log:\n{self.log()}"
            ) from None
        return found


def scrape_config(target: str, *, interval: str = "1s", extra: str = "") -> str:
    return f"""
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: agentic-backend
    metrics_path: /api/v1/monitoring/metrics
    static_configs:
      - targets: ['{target}']
{extra}
"""


def stack_options(source: Path, run_dir: Path, service: Service, **extra: Any) -> StackOptions:
    """`stack up` in test mode on free loopback ports, scraping ``service``."""
    return StackOptions(
        source=source,
        run_dir=run_dir,
        api=f"{LOOPBACK}:{service.port}",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        grafana_port=free_port(),
        fast=True,
        **extra,
    )


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: every notification, with the path (receiver) it came to."""

    url: str
    received: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)

    def alerts(self, name: str, *, since: float = 0.0, status: str = "firing") -> list[dict[str, Any]]:
        return [
            alert
            for _, at, payload in list(self.received)
            if at >= since
            for alert in payload["alerts"]
            if alert["labels"]["alertname"] == name and alert["status"] == status
        ]


def children(pid: int) -> list[int]:
    """The worker processes of uvicorn's supervisor (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def reservations(database: Path, key_id: int) -> tuple[int, int]:
    """The key's reserved amount (key_spend) and its number of reservation rows."""
    with sqlite3.connect(database) as connection:
        amount = connection.execute(
            "SELECT coalesce(sum(reserved_nanodollars), 0) FROM key_spend WHERE key_id = ?", (key_id,)
        ).fetchone()[0]
        rows = connection.execute(
            "SELECT count(*) FROM budget_reservations WHERE key_id = ?", (key_id,)
        ).fetchone()[0]
    return int(amount), int(rows)


class SimLLM(Process):
    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "sim-llm", [sys.executable, "-m", "agentic_backend", "sim-llm", "--port", str(self.port)], workdir
        )
        wait_until(
            lambda: httpx.get(f"{self.url}/stats", timeout=2).status_code == 200, timeout=30, what="sim-llm"
        )

    def calls(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"{self.url}/stats", timeout=5).json()
        return result


DASHBOARD = MONITORING / "grafana" / "dashboards" / "agentic-backend.json"


GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    '"$job"': '"agentic-backend"',
    '"$instance"': '".+"',
}


def panel_queries() -> list[tuple[str, str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], panel["fieldConfig"]["defaults"]["unit"], expr))
    return found


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


def check_plausible(title: str, unit: str, numbers: list[float]) -> None:
    assert numbers, f"{title}: no data"
    assert all(math.isfinite(number) for number in numbers), f"{title}: {numbers}"
    if "Budget" in title:  # the share of a budget left goes below zero once it is overspent
        assert all(number <= 1 for number in numbers), f"{title}: {numbers} above 1"
    elif unit == "percentunit":
        assert all(0 <= number <= 1 for number in numbers), f"{title}: {numbers} outside 0..1"
    else:
        assert all(number >= 0 for number in numbers), f"{title}: {numbers} negative"
