"""Pydantic models of the monitoring API."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CustomMetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class GaugeOperation(StrEnum):
    SET = "set"
    INC = "inc"
    DEC = "dec"


class CustomMetricRecord(BaseModel):
    """One update of a custom metric. POST a single record, or a JSON array of them (applied all or none)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "metric_type": "counter",
                    "name": "custom_events_total",
                    "value": 1,
                    "labels": {"event_type": "signup"},
                }
            ]
        },
    )

    metric_type: CustomMetricType
    name: str = Field(
        min_length=1,
        max_length=200,
        description="A Prometheus metric name; a counter's must end in _total.",
    )
    value: float = Field(
        strict=True,
        description="Counter: the increment (>= 0). Gauge: the value to set, or to add or subtract with "
        "'operation'. Histogram: the observation. Must be finite.",
    )
    labels: dict[str, str] = Field(default_factory=dict, strict=True, description="Label names and values.")
    operation: GaugeOperation | None = Field(
        default=None, description="Gauges only: set (default), inc, dec."
    )
    help: str | None = Field(
        default=None, max_length=1000, description="Help text, taken from the first record."
    )
    buckets: list[float] | None = Field(
        default=None,
        strict=True,
        max_length=64,
        description="Histograms only: finite upper bounds, increasing. Fixed by the first record.",
    )


class RecordedMetric(BaseModel):
    """A series after a record was applied."""

    name: str
    metric_type: CustomMetricType
    labels: dict[str, str]
    value: float | None = Field(default=None, description="Counter or gauge: its value now.")
    count: float | None = Field(default=None, description="Histogram: observations so far.")
    sum: float | None = Field(default=None, description="Histogram: sum of observations so far.")


class RecordResponse(BaseModel):
    accepted: int
    metrics: list[RecordedMetric]


ComponentStatus = Literal["ok", "degraded", "down"]


class ComponentHealth(BaseModel):
    status: ComponentStatus
    detail: str


class HealthResponse(BaseModel):
    status: ComponentStatus
    version: str
    uptime_seconds: float
    components: dict[str, ComponentHealth]
