"""Hardening of the monitoring stack, on real processes: Prometheus behind bcrypt basic auth, the scrape job
authenticating to a protected /metrics, and the remote_write example of prometheus.yml feeding a real
VictoriaMetrics (Debian's victoria-metrics) on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentic_backend import stack
from tests.helpers import MONITORING
from tests.integration.harness import (
    LOOPBACK,
    Process,
    Service,
    free_port,
    require_binary,
    stack_options,
    wait_until,
)

pytestmark = pytest.mark.integration


def monitoring_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy, ignore=shutil.ignore_patterns("secrets"))
    return copy


TOKEN = "metrics-" + os.urandom(16).hex()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The service with /metrics protected by TOKEN."""
    running = Service(tmp_path / "service", env={"AGENTIC_METRICS_TOKEN": TOKEN})
    yield running
    running.stop()


def up_value(prometheus: str, auth: tuple[str, str] | None = None) -> float | None:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, auth=auth, timeout=5).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_behind_basic_auth_scrapes_a_protected_metrics_endpoint(
    tmp_path: Path, service: Service
) -> None:
    assert httpx.get(f"{service.url}/api/v1/monitoring/metrics").status_code == 401

    password = os.urandom(12).hex()
    hashed = subprocess.run(
        [sys.executable, "-m", "agentic_backend", "stack", "hash-password", "--password", password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"\$2b\$12\$.{53}", hashed)
    assert password not in hashed
    source = monitoring_copy(tmp_path)
    (source / "web-config.yml").write_text(yaml.safe_dump({"basic_auth_users": {"admin": hashed}}))
    check = subprocess.run(
        [require_binary("promtool"), "check", "web-config", str(source / "web-config.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    settings = stack_options(source, tmp_path / "stack", service, metrics_token=TOKEN)
    running = stack.up(settings)
    prometheus = running.url("prometheus")
    try:
        refused = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"})
        assert refused.status_code == 401
        wrong = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, auth=("admin", "wrong"))
        assert wrong.status_code == 401
        # The scrape job sends the token: the protected target is up.
        wait_until(lambda: up_value(prometheus, ("admin", password)) == 1, timeout=20, what="up == 1")
    finally:
        stack.down(settings.run_dir)


def test_a_wrong_scrape_token_leaves_the_target_down(tmp_path: Path, service: Service) -> None:
    settings = stack_options(
        monitoring_copy(tmp_path), tmp_path / "stack", service, metrics_token="not-the-token"
    )
    running = stack.up(settings)
    try:
        wait_until(lambda: up_value(running.url("prometheus")) == 0, timeout=20, what="up == 0")
    finally:
        stack.down(settings.run_dir)


def remote_write_example() -> list[dict[str, Any]]:
    """The commented remote_write block at the end of monitoring/prometheus.yml, uncommented."""
    text = (MONITORING / "prometheus.yml").read_text()
    block = text[text.index("# remote_write:") :]
    uncommented = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    example: list[dict[str, Any]] = yaml.safe_load(uncommented)["remote_write"]
    return example


def test_remote_write_example_feeds_victoria_metrics(tmp_path: Path, service: Service) -> None:
    binary = require_binary("victoria-metrics")
    port = free_port()
    victoria = Process(
        "victoria-metrics",
        [
            binary,
            f"-httpListenAddr={LOOPBACK}:{port}",
            f"-storageDataPath={tmp_path / 'vm-data'}",
            "-search.latencyOffset=0s",  # answer with the newest samples at once
        ],
        tmp_path,
    )
    vm_url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{vm_url}/health").status_code == 200, timeout=20, what="VictoriaMetrics"
        )
        source = monitoring_copy(tmp_path)
        config = yaml.safe_load((source / "prometheus.yml").read_text())
        (example,) = remote_write_example()
        assert example["url"] == "http://victoriametrics:8428/api/v1/write"
        example["url"] = example["url"].replace("victoriametrics:8428", f"{LOOPBACK}:{port}")
        config["remote_write"] = [example]
        (source / "prometheus.yml").write_text(yaml.safe_dump(config))
        settings = stack_options(source, tmp_path / "stack", service, metrics_token=TOKEN)
        stack.up(settings)
        try:

            def written() -> list[dict[str, Any]]:
                params = {"query": 'http_requests_total{job="agentic-backend"}'}
                result: list[dict[str, Any]] = httpx.get(f"{vm_url}/api/v1/query", params=params).json()[
                    "data"
                ]["result"]
                return result

            series = wait_until(written, timeout=60, what="samples written to VictoriaMetrics", interval=1)
            assert all(s["metric"]["service"] == "agentic-backend" for s in series), "external labels kept"
        finally:
            stack.down(settings.run_dir)
    finally:
        victoria.stop()
