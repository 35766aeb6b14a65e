"""Pydantic models of the monitoring API."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.config import JsonDict

from agentic_backend.metricstore.families import MetricType
from agentic_backend.metricstore.naming import label_name_schema, metric_name_schema

MAX_LABEL_VALUE = 1024  # characters


class CustomMetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class GaugeOperation(StrEnum):
    SET = "set"
    INC = "inc"
    DEC = "dec"


_LARGEST = sys.float_info.max  # JSON numbers past it read as infinity, which no metric takes


def _value(description: str, *, signed: bool) -> Any:
    # The bounds are published, and checked by monitoring/custom.py, whose sentences say what to do
    # instead (a counter that should go down is a gauge) where pydantic's would only say "greater than".
    bounds: JsonDict = {"minimum": -_LARGEST if signed else 0, "maximum": _LARGEST}
    return Field(strict=True, description=description, json_schema_extra=bounds)


def _name(kind: MetricType, description: str) -> Any:
    return Field(
        min_length=1, max_length=200, description=description, json_schema_extra=metric_name_schema(kind)
    )


def _labels() -> Any:
    return Field(
        default_factory=dict,
        strict=True,
        description="Label names and values (snake_case names; values up to 1,024 characters).",
        json_schema_extra={
            "propertyNames": label_name_schema(),
            "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE},
        },
    )


_HELP = Field(default=None, max_length=1000, description="Help text, taken from the first record.")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = _labels()
    help: str | None = _HELP


class CounterRecord(_Record):
    """Add to a counter."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "metric_type": "counter",
                    "name": "custom_events_total",
                    "value": 1,
                    "labels": {"event_type": "signup"},
                }
            ]
        }
    )

    metric_type: Literal[CustomMetricType.COUNTER]
    name: str = _name(MetricType.COUNTER, "A Prometheus metric name ending in _total.")
    value: float = _value("The increment.", signed=False)


class GaugeRecord(_Record):
    """Set a gauge, or add to or subtract from it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"metric_type": "gauge", "name": "queue_depth", "value": 3, "labels": {}}]
        }
    )

    metric_type: Literal[CustomMetricType.GAUGE]
    name: str = _name(MetricType.GAUGE, "A Prometheus metric name (not ending in _total).")
    value: float = _value("The value to set, or to add or subtract with 'operation'.", signed=True)
    operation: GaugeOperation | None = Field(default=None, description="set (the default), inc or dec.")


class HistogramRecord(_Record):
    """Observe a value in a histogram."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "metric_type": "histogram",
                    "name": "job_duration_seconds",
                    "value": 0.42,
                    "buckets": [0.1, 1, 10],
                }
            ]
        }
    )

    metric_type: Literal[CustomMetricType.HISTOGRAM]
    name: str = _name(MetricType.HISTOGRAM, "A Prometheus metric name (not ending in _total).")
    value: float = _value("The observation.", signed=False)
    buckets: list[float] | None = Field(
        default=None,
        strict=True,
        min_length=1,
        max_length=64,
        description="Upper bounds, each once, in any order (+Inf is always added). Fixed by the first "
        "record.",
        json_schema_extra={
            "uniqueItems": True,
            "items": {"type": "number", "minimum": 0, "maximum": _LARGEST},
        },
    )


CustomMetricRecord = Annotated[
    CounterRecord | GaugeRecord | HistogramRecord,
    Field(
        discriminator="metric_type",
        description="One update of a custom metric. POST a single record, or a JSON array of them "
        "(applied all or none).",
    ),
]


_RECORD = TypeAdapter(CustomMetricRecord)


def parse_record(data: object) -> CounterRecord | GaugeRecord | HistogramRecord:
    """A record from its JSON form (raises pydantic's ValidationError)."""
    return _RECORD.validate_python(data)


def publish_record_schema(schema: dict[str, Any], *, max_labels: int, max_batch: int) -> None:
    """Say the configured caps in the OpenAPI document: labels per record and records per request."""
    components = schema["components"]["schemas"]
    for name in ("CounterRecord", "GaugeRecord", "HistogramRecord"):
        components[name]["properties"]["labels"]["maxProperties"] = max_labels
    body = schema["paths"]["/api/v1/monitoring/record"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"]["oneOf"][1].update(minItems=1, maxItems=max_batch)


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
