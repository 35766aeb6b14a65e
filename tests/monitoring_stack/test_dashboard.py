"""The Grafana dashboard as code: the committed JSON is what the generator writes, it carries the seed's 13
panels in the seed's order, and every panel follows the rules that keep it right with several replicas."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agentic_backend.metricstore.families import Aggregation, MetricType
from agentic_backend.metricstore.registry import SERIES_OVERFLOW
from agentic_backend.monitoring.catalogue import CATALOGUE, GENAI_CATALOGUE
from tests.helpers import ROOT

GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "agentic-backend.json"

SEED_PANELS = [
    "HTTP Requests",
    "Active Sessions",
    "Request Rate",
    "Request Latency",
    "Agent Query Rate",
    "Agent Duration",
    "API Cost",
    "Token Usage",
    "Cache Hit Rate",
    "Total Cost",
    "Total Tokens",
    "Authentication",
    "Permissions",
]
SCOPE = ('job=~"$job"', 'instance=~"$instance"')


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_generator", GRAFANA / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in board()["panels"] if panel["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def metric_names() -> set[str]:
    names = {SERIES_OVERFLOW.name}
    for spec in (*CATALOGUE, *GENAI_CATALOGUE):
        names.add(spec.name)
        if spec.type is MetricType.HISTOGRAM:
            names |= {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    return names


def test_committed_json_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text() == generator().render(), "run `make dashboard` and commit the JSON"


def test_title_uid_and_the_seed_panels_in_order() -> None:
    data = board()
    assert data["title"] == "Agentic Backend - Production Monitoring"
    assert data["uid"] == "agentic-backend-main"
    assert [panel["title"] for panel in data["panels"][: len(SEED_PANELS)]] == SEED_PANELS
    positions = [(panel["gridPos"]["y"], panel["gridPos"]["x"]) for panel in data["panels"]]
    assert positions == sorted(positions), "panels are laid out in reading order"


def test_datasource_job_and_instance_variables() -> None:
    variables = {variable["name"]: variable for variable in board()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"]
        assert variables[name]["multi"]
    assert "$job" in variables["instance"]["query"]


@pytest.mark.parametrize("panel", panels(), ids=lambda panel: panel["title"])
def test_panel_has_unit_description_datasource_and_queries(panel: dict[str, Any]) -> None:
    assert panel["fieldConfig"]["defaults"].get("unit"), "every panel has a unit"
    assert panel.get("description")
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel["targets"]
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == "${datasource}"
        if panel["type"] == "stat":
            assert target["instant"] is True


@pytest.mark.parametrize(("title", "expr"), exprs(), ids=[f"{t}:{e[:40]}" for t, e in exprs()])
def test_query_is_scoped_windowed_and_aggregated(title: str, expr: str) -> None:
    known = metric_names()
    selectors = re.findall(r"([a-z_:]+)\{([^}]*)\}", expr)
    assert selectors, "every query reads a metric through a selector"
    for name, matchers in selectors:
        assert name in known, f"{name} is not in the metric catalogue"
        for scope in SCOPE:
            assert scope in matchers, f"{name} is not scoped by {scope}"
    bare = set(
        re.findall(r"\b([a-z_]+_(?:total|seconds|bytes|sessions|requests|bucket|count))\b(?!\{)", expr)
    )
    assert not bare & known, f"metrics read without the job/instance selector: {bare & known}"
    for window in re.findall(r"\brate\([^\[]*\[([^\]]+)\]", expr):
        assert window == "$__rate_interval"
    for window in re.findall(r"\bincrease\([^\[]*\[([^\]]+)\]", expr):
        assert window in {"$__range", "30d"}
    # Counters are summed after rate()/increase(), never rated after summing, and every rate is aggregated.
    for match in re.finditer(r"\b(rate|increase)\(", expr):
        before = expr[: match.start()]
        assert re.search(r"sum(?: by \([^)]*\))? \($|sum\($", before), f"{match.group(1)} is not summed"
    # Gauges: max() for those every replica reports alike, sum() for those each replica has its own of.
    for spec in (*CATALOGUE, *GENAI_CATALOGUE):
        if spec.type is not MetricType.GAUGE or spec.name + "{" not in expr:
            continue
        aggregation = "max" if spec.aggregation is Aggregation.SHARED else "sum"
        assert re.search(rf"{aggregation}(?: by \([^)]*\) )?\({spec.name}\{{", expr), (
            f"{spec.name} must be aggregated with {aggregation}() across replicas"
        )


def test_every_seed_metric_is_on_the_dashboard() -> None:
    text = " ".join(expr for _, expr in exprs())
    seed = [
        "http_requests_total",
        "http_request_duration_seconds",
        "agent_queries_total",
        "agent_query_duration_seconds",
        "api_cost_dollars_total",
        "api_tokens_total",
        "cache_operations_total",
        "auth_attempts_total",
        "permission_checks_total",
        "active_sessions",
        "active_requests",
        "cache_size_bytes",
    ]
    assert [name for name in seed if name not in text] == []


def test_provisioning_points_grafana_at_the_dashboard_and_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(source["type"], source["uid"]) for source in datasources] == [("prometheus", "prometheus")]
    providers = yaml.safe_load((GRAFANA / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"] == "/etc/grafana/provisioning/dashboards"


def test_latency_panels_show_exemplars_linked_to_a_traces_data_source() -> None:
    variables = {variable["name"]: variable for variable in board()["templating"]["list"]}
    assert variables["traces"]["type"] == "datasource"
    with_exemplars = {
        title
        for title, expr in exprs()
        if "http_request_duration_seconds_bucket" in expr or "agent_query" in expr
    }
    for panel in panels():
        for target in panel["targets"]:
            if any(name in target["expr"] for name in ("_duration_seconds_bucket",)) and (
                panel["title"] in with_exemplars
            ):
                assert target.get("exemplar") is True, panel["title"]
    datasource = (Path(__file__).parents[2] / "monitoring/grafana/datasources/prometheus.yml").read_text()
    assert "exemplarTraceIdDestinations" in datasource
