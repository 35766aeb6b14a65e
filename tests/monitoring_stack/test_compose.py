"""docker-compose.yml and the Dockerfile. Docker does not run on our machines, so the compose file is
validated against the compose specification's JSON schema (vendored by check-jsonschema), and then read
for what the seed and the hardening ask of it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def flags(service: dict[str, Any]) -> list[str]:
    return [str(arg) for arg in service.get("command", [])]


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_seed_services_and_names() -> None:
    services = compose()["services"]
    assert {"api", "prometheus", "grafana", "alertmanager"} <= set(services)
    assert services["grafana"]["container_name"] == "agentic-grafana"
    assert "prometheus_data" in compose()["volumes"]
    assert "prometheus_data:/prometheus" in services["prometheus"]["volumes"]
    assert {"redis", "postgres"} <= set(services)
    for optional in ("redis", "postgres"):
        assert services[optional]["profiles"] == ["replicas"], "plain `docker compose up` leaves them out"


def test_prometheus_keeps_30_days_with_a_size_cap_and_loads_the_repo_files() -> None:
    prometheus = compose()["services"]["prometheus"]
    args = flags(prometheus)
    assert "--storage.tsdb.retention.time=30d" in args
    assert any(arg.startswith("--storage.tsdb.retention.size=") for arg in args)
    assert "--config.file=/etc/prometheus/prometheus.yml" in args
    assert "--web.config.file=/etc/prometheus/web-config.yml" in args
    assert "./monitoring:/etc/prometheus:ro" in prometheus["volumes"]
    assert "metrics_token" in " ".join(prometheus["entrypoint"]), "the scrape token is written from the env"


def test_grafana_is_locked_down_and_provisioned() -> None:
    grafana = compose()["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_USER"] == "admin"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_PASSWORD")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    targets = {volume.split(":")[1] for volume in grafana["volumes"]}
    assert {"/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards"} <= targets


@pytest.mark.parametrize(
    "volume",
    [
        volume
        for service in compose()["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ],
)
def test_every_bind_mount_exists_in_the_repository(volume: str) -> None:
    assert (ROOT / volume.split(":")[0]).exists()


def test_dockerfile_runs_the_service_as_a_user_with_a_healthcheck() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert lines[next(i for i, line in enumerate(lines) if line.startswith("FROM"))].startswith(
        "FROM python:3.11"
    )
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert any("uv sync --locked" in line for line in lines), "the image installs the locked dependencies"
    assert lines[-1] == 'CMD ["agentic-backend", "serve", "--host", "0.0.0.0", "--port", "8000"]'
