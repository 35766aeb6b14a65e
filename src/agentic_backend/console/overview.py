"""The console's overview: each panel of the dashboard's seed and service-level rows, evaluated for a range.

With ``AGENTIC_PROMETHEUS_URL`` the panel's PromQL goes to Prometheus (``query_range`` for a graph,
``query`` for a stat), the very text of the Grafana dashboard with its variables filled in. Without it, the
same text is evaluated over the service's own history (monitoring/promql.py, console/history.py), with a
live sample of this moment for the stats, so that a stat tile equals ``/summary`` at the same moment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from agentic_backend.console.history import INTERVAL, History, measure
from agentic_backend.metricstore.registry import Snapshot
from agentic_backend.monitoring.panels import ROWS, WAITING, Panel
from agentic_backend.monitoring.promql import Evaluation, Vector, legend, parse, unscoped

RangeName = Literal["15m", "1h", "6h", "24h"]
# The range, and the step between points: 60 to 360 points a chart.
RANGES: dict[str, tuple[int, int]] = {
    "15m": (900, 15),
    "1h": (3600, 15),
    "6h": (21600, 60),
    "24h": (86400, 300),
}
# The rows the console draws: the seed's 13 panels, the service levels, and the waits (issue 19).
CONSOLE_ROWS = tuple(row for row in ROWS if row.title in (None, "Service levels", WAITING))
PANELS: tuple[Panel, ...] = tuple(panel for row in CONSOLE_ROWS for panel in row.panels)
ROW_OF = {panel.title: row.title for row in CONSOLE_ROWS for panel in row.panels}


def rate_window(step: int) -> int:
    """What Grafana's ``$__rate_interval`` is for a 15 s scrape: max(4 scrapes, step + a scrape)."""
    return max(4 * INTERVAL, step + INTERVAL)


def promql_for(expr: str, *, window: int, range_: int) -> str:
    """The dashboard's PromQL as the console sends it: every job and instance, its window, its range."""
    return unscoped(expr).replace("$__rate_interval", f"{window}s").replace("$__range", f"{range_}s")


class Line(BaseModel):
    name: str
    values: list[float | None]


class PanelData(BaseModel):
    row: str | None = Field(description="The dashboard row it belongs to; null: the seed's panels.")
    title: str
    description: str
    unit: str
    kind: Literal["stat", "graph"]
    queries: list[str] = Field(description="The PromQL evaluated, as the Grafana dashboard holds it.")
    lines: list[Line]


class Overview(BaseModel):
    source: Literal["prometheus", "embedded"]
    range: str
    step_seconds: int
    times: list[float] = Field(
        description="Unix seconds of the graphs' points: a grid of the step, then (embedded) this moment."
    )
    panels: list[PanelData]
    history_since: float | None = Field(
        default=None, description="Embedded: the oldest sample kept (the service levels count from there)."
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _lines(result: Vector | float, template: str) -> list[Line]:
    if isinstance(result, float):
        return [Line(name=legend(template, ()), values=[_finite(result)])]
    lines = [
        Line(name=legend(template, labels), values=[_finite(v) for v in values])
        for labels, values in sorted(result.items())
    ]
    return [line for line in lines if any(v is not None for v in line.values)]


@dataclass
class _Grid:
    """A range's graphs over its grid, ending at ``end``: the same until the grid moves a step on."""

    end: int
    lines: dict[str, list[Line]]
    since: float | None


async def embedded(
    history: History, snapshot: Callable[[], Awaitable[Snapshot]], range_name: str, now: float | None = None
) -> Overview:
    """The grid's points come from the stored history and are computed once per step and worker (every
    console open on the range shares them: 10 consoles on auto-refresh cost what one does); this moment's
    point and the stat tiles are computed for each request, from a live sample."""
    span, step = RANGES[range_name]
    now = time.time() if now is None else now
    end = int(now) // step * step
    grid = [float(end - span + step * (i + 1)) for i in range(span // step)]
    window = rate_window(step)
    lookback = 2 * max(step, history.interval) + 1
    cached = history.cache.get(range_name)
    if not isinstance(cached, _Grid) or cached.end != end:
        # Only the samples the points read (a point and the start of its window): ~300 rows for any range.
        loaded = await history.load({t - d for t in grid for d in (0, window)})
        evaluation = Evaluation(loaded, grid, window=window, range_=span, lookback=lookback)
        cached = _Grid(end, _evaluate(evaluation, "graph"), min(loaded.starts.values(), default=None))
        if end in loaded.times:  # the sample at the grid's end is written: the grid will not change
            history.cache[range_name] = cached
    live = await history.load({now - window, now - span, now - step})
    live.add(history.instance, now, measure(await snapshot(), history.leaves))
    moment = _evaluate(Evaluation(live, [now], window=window, range_=span, lookback=lookback), None)
    panels = []
    for panel in PANELS:
        if panel.kind == "stat":
            lines = moment[panel.title]
        else:  # the grid, then this moment
            last = {line.name: line.values[0] for line in moment[panel.title]}
            lines = [
                Line(name=line.name, values=[*line.values, last.pop(line.name, None)])
                for line in cached.lines[panel.title]
            ]
            lines += [Line(name=name, values=[None] * len(grid) + [value]) for name, value in last.items()]
        panels.append(_panel_data(panel, lines, window, span))
    return Overview(
        source="embedded",
        range=range_name,
        step_seconds=step,
        times=[*grid, now],
        panels=panels,
        history_since=cached.since,
    )


def _evaluate(evaluation: Evaluation, kind: str | None) -> dict[str, list[Line]]:
    """Each panel's lines (of ``kind`` only, if given), by title."""
    return {
        panel.title: [
            line
            for target in panel.targets
            for line in _lines(evaluation.run(parse(target.expr)), target.legend)
        ]
        for panel in PANELS
        if kind is None or panel.kind == kind
    }


def _panel_data(panel: Panel, lines: list[Line], window: int, span: int) -> PanelData:
    return PanelData(
        row=ROW_OF[panel.title],
        title=panel.title,
        description=panel.description,
        unit=panel.unit,
        kind=panel.kind,
        queries=[promql_for(t.expr, window=window, range_=span) for t in panel.targets],
        lines=lines,
    )


class PrometheusUnavailable(Exception):
    pass


async def from_prometheus(
    client: httpx.AsyncClient, url: str, range_name: str, now: float | None = None
) -> Overview:
    span, step = RANGES[range_name]
    now = float(int(time.time() if now is None else now))
    # Ending at this moment (Prometheus answers at start + k * step): a service just started draws.
    times = [now - span + step * (i + 1) for i in range(span // step)]
    window = rate_window(step)
    panels = []
    for panel in PANELS:
        lines: list[Line] = []
        for target in panel.targets:
            expr = promql_for(target.expr, window=window, range_=span)
            if panel.kind == "stat":
                data = await _get(client, f"{url}/api/v1/query", {"query": expr, "time": now})
                for item in data:
                    labels = tuple(sorted(item["metric"].items()))
                    lines.append(Line(name=legend(target.legend, labels), values=[_number(item["value"][1])]))
            else:
                params = {"query": expr, "start": times[0], "end": times[-1], "step": step}
                data = await _get(client, f"{url}/api/v1/query_range", params)
                for item in data:
                    labels = tuple(sorted(item["metric"].items()))
                    points = {float(t): _number(v) for t, v in item["values"]}
                    lines.append(
                        Line(name=legend(target.legend, labels), values=[points.get(t) for t in times])
                    )
        panels.append(_panel_data(panel, lines, window, span))
    return Overview(source="prometheus", range=range_name, step_seconds=step, times=times, panels=panels)


def _number(text: str) -> float | None:
    return _finite(float(text))


async def _get(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Sequence[dict[str, Any]]:
    try:
        answer = await client.get(url, params=params, timeout=10)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PrometheusUnavailable(f"Prometheus did not answer: {type(exc).__name__}") from None
    if answer.status_code != 200 or body.get("status") != "success":
        raise PrometheusUnavailable(f"Prometheus refused the query: {str(body.get('error', ''))[:200]}")
    result: Sequence[dict[str, Any]] = body["data"]["result"]
    return result
