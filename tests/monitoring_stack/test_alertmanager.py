"""monitoring/alertmanager.yml: amtool accepts it, label sets reach the intended receivers, and critical
alerts inhibit warnings of the same job."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import require_binary

CONFIG = Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True, check=False)


def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "HighErrorRate", "severity": "critical", "job": "agentic-backend"}, "pager"),
        ({"alertname": "ErrorBudgetBurnFast", "severity": "critical", "job": "agentic-backend"}, "pager"),
        ({"alertname": "ErrorBudgetBurnSlow", "severity": "warning", "job": "agentic-backend"}, "tickets"),
        ({"alertname": "AuthFailureSpike", "severity": "warning", "job": "agentic-backend"}, "tickets"),
        ({"alertname": "Watchdog", "severity": "info"}, "watchdog"),
        ({"alertname": "SomethingElse", "severity": "info"}, "default"),
    ],
)
def test_routes(labels: dict[str, str], receiver: str) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_critical_inhibits_warning_of_the_same_job() -> None:
    (rule,) = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="critical"']
    assert rule["target_matchers"] == ['severity="warning"']
    assert rule["equal"] == ["job"]
