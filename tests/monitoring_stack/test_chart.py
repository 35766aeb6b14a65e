"""The Helm chart (deploy/helm/agentic-backend), proven without a cluster: ``helm lint --strict`` and
``helm template`` over a matrix of values; every rendered object of Kubernetes' own kinds valid for the
supported versions (kubernetes-validate, strict: an unknown field fails); the PrometheusRule's rules pass
promtool and are monitoring/'s own (one source of truth); secrets never inline with an existing Secret;
and a wrong value refused at install by values.schema.json."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scripts import chart_files
from tests.helpers import ROOT, missing
from tests.kube import CHART, render, run_helm

VERSIONS = ("1.30.0", "1.35.0")  # the oldest Kubernetes the chart supports, and a recent one
SECRETS = {
    "adminApiKey": "admin-key-0123456789abcdef0123456789abcdef",
    "metricsToken": "metrics-token-0123456789",
    "databaseUrl": "postgresql+asyncpg://agentic:db-password-42@postgres:5432/agentic",
    "redisUrl": "redis://:redis-password-42@redis:6379/0",
}
MONITORING_ON = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "production": {**SECRETS, "replicaCount": 3, "workers": 2, **MONITORING_ON},
    "hpa": {**SECRETS, "autoscaling": {"enabled": True}},
    "keda": {**SECRETS, "keda": {"enabled": True}},
    "existing-secret": {"existingSecret": "agentic-secrets", "replicaCount": 2, **MONITORING_ON},
    "ingress-and-route": {
        "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "agents.example.com"}]},
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "gateway"}],
            "hostnames": ["agents.example.com"],
        },
    },
}


def validate_custom_resources(objects: list[dict[str, Any]], tmp_path: Path) -> dict[str, list[str]]:
    """The errors of each custom resource against its CRD's schema (tests/crds/validate.cjs), by kind."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (a Debian package; scripts/bootstrap.sh all installs it)")
    file = tmp_path / "custom-resources.json"
    file.write_text(json.dumps(objects))
    done = subprocess.run(
        [node, str(ROOT / "tests" / "crds" / "validate.cjs"), str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {found["kind"]: found["errors"] for found in map(json.loads, done.stdout.splitlines())}


def is_custom(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    return "." in group and group not in ("networking.k8s.io",)


@pytest.mark.parametrize("case", MATRIX)
def test_the_chart_lints_renders_and_validates(case: str, tmp_path: Path) -> None:
    values = MATRIX[case]
    run_helm("lint", "--strict", str(CHART), values=values, tmp_path=tmp_path)
    objects = render(values, tmp_path)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    for obj in objects:
        if not is_custom(obj):
            for version in VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
    custom = [obj for obj in objects if is_custom(obj)]
    if custom:  # ServiceMonitor, PrometheusRule, ScaledObject, HTTPRoute: their CRDs' schemas
        assert validate_custom_resources(custom, tmp_path) == {obj["kind"]: [] for obj in custom}
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/monitoring/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/monitoring/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    shared = "databaseUrl" in values or "existingSecret" in values
    assert env["AGENTIC_MIGRATE_ON_START"]["value"] == ("false" if shared else "true")
    jobs = [obj for obj in objects if obj["kind"] == "Job"]
    assert bool(jobs) is shared  # a shared database is migrated once per release, before the pods roll
    for job in jobs:
        hooks = job["metadata"]["annotations"]["helm.sh/hook"]
        assert hooks == "pre-install,pre-upgrade"
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
            "agentic-backend",
            "db",
            "upgrade",
        ]
        assert job["spec"]["parallelism"] == 1


def test_an_existing_secret_keeps_every_secret_out_of_the_manifest(tmp_path: Path) -> None:
    inline = yaml.safe_dump_all(render({**SECRETS, "replicaCount": 2, **MONITORING_ON}, tmp_path))
    for secret in SECRETS.values():
        assert secret in inline  # (in the chart's own Secrets, which is why existingSecret exists)
    objects = render({"existingSecret": "agentic-secrets", "replicaCount": 2, **MONITORING_ON}, tmp_path)
    text = yaml.safe_dump_all(objects)
    for secret in SECRETS.values():
        assert secret not in text
    assert not [obj for obj in objects if obj["kind"] == "Secret"]
    monitor = next(obj for obj in objects if obj["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == "agentic-secrets"


def test_the_prometheus_rule_is_monitorings_own_and_passes_promtool(tmp_path: Path) -> None:
    assert {
        name: (CHART / "files" / name).read_text() for name in chart_files.expected()
    } == chart_files.expected(), "run `make chart`: the chart's copies differ from monitoring/"
    objects = render(
        {
            **SECRETS,
            **MONITORING_ON,
            "monitoring": {
                **MONITORING_ON["monitoring"],
                "runbookBaseUrl": "https://runbooks.example.com/agentic",
            },
        },
        tmp_path,
    )
    rule = next(obj for obj in objects if obj["kind"] == "PrometheusRule")
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in chart_files.rule_groups()]
    links = [r["annotations"]["runbook_url"] for g in groups for r in g["rules"] if "alert" in r]
    assert links
    assert all(link.startswith("https://runbooks.example.com/agentic#") for link in links)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is a Debian package the bootstrap installs"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dashboard = next(
        obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicasCount": 2}, "replicasCount"),
        ({"workers": 0}, "workers"),
        ({"databaseUrl": "mysql://x"}, "databaseUrl"),
        ({"env": {"PATH": "/tmp"}}, "PATH"),
        ({"replicaCount": 2}, "shared database"),
        ({**SECRETS, "autoscaling": {"enabled": True}, "keda": {"enabled": True}}, "enable one"),
        ({"monitoring": {"runbookBaseUrl": "runbooks"}}, "runbookBaseUrl"),
        ({"preStopSeconds": 30, "terminationGracePeriodSeconds": 30}, "terminationGracePeriodSeconds"),
    ],
)
def test_a_wrong_value_fails_at_install(values: dict[str, Any], said: str, tmp_path: Path) -> None:
    output = run_helm("template", "rel", str(CHART), values=values, tmp_path=tmp_path, check=False)
    assert "Error" in output
    assert said in output


def test_the_crd_check_refuses_an_unknown_field_and_a_wrong_type(tmp_path: Path) -> None:
    objects = [
        obj
        for obj in render({**SECRETS, **MONITORING_ON, "keda": {"enabled": True}}, tmp_path)
        if is_custom(obj)
    ]
    monitor = next(obj for obj in objects if obj["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "5s"
    scaler = next(obj for obj in objects if obj["kind"] == "ScaledObject")
    scaler["spec"]["minReplicaCount"] = "two"
    errors = validate_custom_resources(objects, tmp_path)
    assert errors["ServiceMonitor"] == [
        "/spec/endpoints/0 must NOT have additional properties: scrapeIntervall"
    ]
    assert errors["ScaledObject"] == ["/spec/minReplicaCount must be integer"]
    assert errors["PrometheusRule"] == []
