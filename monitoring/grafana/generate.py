"""The Grafana dashboard "Agentic Backend - Production Monitoring", as code.

Run ``make dashboard`` (or ``uv run python monitoring/grafana/generate.py``) after editing; it rewrites
``dashboards/agentic-backend.json``, which Grafana's provisioning loads. The panels themselves (titles,
units, PromQL) are defined once in ``agentic_backend.monitoring.panels``, which the console reads too; this
file only lays them out in Grafana's model. A test regenerates the JSON and fails when the committed file
differs, and another lints every panel (units, variables, rate windows).
"""

from __future__ import annotations

import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as parts
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from agentic_backend.monitoring.panels import ROWS, TITLE, Panel

UID = "agentic-backend-main"
OUTPUT = Path(__file__).with_name("dashboards") / "agentic-backend.json"

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Histograms whose buckets carry exemplars (a recent trace id each) when the service traces: their panels
# show them as points, and the Prometheus data source links a point's trace_id to the traces data source
# (monitoring/grafana/datasources/prometheus.yml).
EXEMPLARS = (
    "http_request_duration_seconds_bucket",
    "agent_query_duration_seconds_bucket",
    "llm_request_duration_seconds_bucket",
)


def targets(panel: Panel) -> list[prometheus.Dataquery]:
    built = []
    for i, target in enumerate(panel.targets):
        one = (
            prometheus.Dataquery()
            .expr(target.expr)
            .legend_format(target.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
        if any(name in target.expr for name in EXEMPLARS):
            one = one.exemplar(True)
        built.append(one.instant() if panel.kind == "stat" else one)
    return built


def graph(panel: Panel) -> timeseries.Panel:
    built = (
        timeseries.Panel()
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            parts.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(parts.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    if panel.min_val is not None:
        built = built.min(panel.min_val)
    if panel.max_val is not None:
        built = built.max(panel.max_val)
    if panel.stacked:
        built = built.stacking(parts.StackingConfig().mode(common.StackingMode.NORMAL))
    for target in targets(panel):
        built = built.with_target(target)
    return built


def single(panel: Panel) -> stat.Panel:
    built = (
        stat.Panel()
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
        .graph_mode(common.BigValueGraphMode.NONE)  # instant queries: no sparkline
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(parts.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if panel.decimals is not None:
        built = built.decimals(panel.decimals)
    for target in targets(panel):
        built = built.with_target(target)
    return built


def variables() -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    def label_values(name: str, expr: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(name)
            .datasource(DATASOURCE)
            .query(expr)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".+")
        )

    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # Where exemplars' traces are (Tempo; Jaeger works alike): the trace of a slow bucket's query.
        dashboard.DatasourceVariable("traces").label("Traces").type("tempo"),
        label_values("job", "label_values(http_requests_total, job)"),
        label_values("instance", 'label_values(http_requests_total{job=~"$job"}, instance)'),
    ]


def build() -> model.Dashboard:
    board = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Traffic, latency, agents, LLM cost and tokens, cache and security of the Agentic Backend."
        )
        .tags(["agentic-backend", "generated"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(common.TimeZoneBrowser)
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
    for variable in variables():
        board = board.with_variable(variable)
    for row in ROWS:
        if row.title is not None:
            board = board.with_row(dashboard.Row(row.title))
        for panel in row.panels:
            board = board.with_panel(single(panel) if panel.kind == "stat" else graph(panel))
    return board.build()


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
