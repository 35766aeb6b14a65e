"""The monitoring files as code: promtool checks the config and rules, runs the alert unit tests, and
every alert has a firing and a silent case, its labels and annotations, and a runbook section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import MONITORING, ROOT
from tests.integration.harness import require_binary

# The cases of a day or more are in a file of their own, evaluated every 5 minutes (alerts_slow_test.yml).
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
SLOW_ALERT_TESTS = Path(__file__).with_name("alerts_slow_test.yml")
RULE_FILES = sorted((MONITORING / "rules").glob("*.yml")) + sorted((MONITORING / "alerts").glob("*.yml"))


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in sorted((MONITORING / "alerts").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def test_prometheus_config_is_valid_on_a_fresh_clone(tmp_path: Path) -> None:
    # Exactly the files git tracks, as a fresh clone has them: nothing that Compose or `stack up` writes.
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "monitoring"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        target = tmp_path / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name.decode(), target)
    assert (tmp_path / "monitoring" / "secrets" / "metrics_token").read_text() == "", "never a real token"
    result = promtool("check", "config", "monitoring/prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_config_is_valid() -> None:
    result = promtool("check", "web-config", "web-config.yml", cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_promtool_with_lint_fatal() -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tests", [ALERT_TESTS, SLOW_ALERT_TESTS], ids=lambda path: path.name)
def test_alert_unit_tests_pass(tests: Path) -> None:
    result = promtool("test", "rules", str(tests), cwd=tests.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in (
        *yaml.safe_load(ALERT_TESTS.read_text())["tests"],
        *yaml.safe_load(SLOW_ALERT_TESTS.read_text())["tests"],
    ):
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never seen firing in alerts_test.yml or alerts_slow_test.yml"
    assert names - {"Watchdog"} - silent == set(), "alerts never seen silent in either file"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_annotations_and_a_runbook_section(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path == "docs/runbook.md"
    headings = {
        line[3:].strip().lower() for line in (ROOT / path).read_text().splitlines() if line.startswith("## ")
    }
    assert anchor in headings, f"no section '## {rule['alert']}' in {path}"


def test_recording_rules_follow_level_metric_operation() -> None:
    for group in yaml.safe_load((MONITORING / "rules" / "recording.yml").read_text())["groups"]:
        for rule in group["rules"]:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
