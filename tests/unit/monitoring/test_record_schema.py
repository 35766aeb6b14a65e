"""The published JSON Schema of a custom metric record says exactly what the service accepts: a record is
valid against it if and only if the service records it (or answers 409: the name is the service's, or
conflicts with what is already recorded, which the schema need not know). schemathesis holds the live service to the same in
tests/integration/test_contract.py; this checks the naming rules word by word, with names built from the
very words the rules are about."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.core.errors import AppError
from agentic_backend.monitoring.schemas import parse_record
from agentic_backend.monitoring.service import Telemetry

WORDS = [
    "jobs", "queue", "depth", "up", "scrape", "agentic", "backend", "total", "created", "bucket", "count",
    "sum", "info", "counter", "Gauge", "HISTOGRAM", "summary", "seconds", "minutes", "bytes", "kilobytes",
    "milliseconds", "MS", "ms", "s", "b", "kb", "d", "celsius", "fahrenheit", "meters", "miles", "x",
    "fooBar", "Bar", "le", "quantile", "", "_", "9", "é", ":", "a:b",
]  # fmt: skip
names = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map("_".join)
label_names = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map("_".join)


def record_schema() -> dict[str, Any]:
    document = create_app(Settings()).openapi()
    components = document["components"]["schemas"]
    body = document["paths"]["/api/v1/monitoring/record"]["post"]["requestBody"]["content"]
    return {**body["application/json"]["schema"]["oneOf"][0], "components": {"schemas": components}}


SCHEMA = record_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def outcome(record: dict[str, Any]) -> tuple[bool, str]:
    """Whether the schema allows the record, and what the service says of it (on a fresh store)."""
    telemetry = Telemetry(Settings())
    try:
        telemetry.custom.record([parse_record(record)])
    except ValidationError as exc:
        said = f"422 {exc.errors()[0]['msg']}"
    except AppError as exc:
        said = f"{exc.status_code} {exc.detail}"
    else:
        said = "200"
    return VALIDATOR.is_valid(record), said


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["counter", "gauge", "histogram"]),
    name=names,
    label=label_names,
    buckets=st.none() | st.lists(st.sampled_from([0.0, -0.0, 1.0, 1, 2.5, -1.0, 1e308]), max_size=3),
    value=st.sampled_from([0, 1.5, -1.0, 1e308]),
)
@example(kind="counter", name="jobs_total", label="queue", buckets=None, value=1)
@example(kind="gauge", name="up", label="x", buckets=None, value=1)
@example(kind="gauge", name="latency_seconds_minutes", label="x", buckets=None, value=1)
@example(kind="histogram", name="wait_seconds", label="le", buckets=[2.5, 1.0], value=1)
@example(kind="histogram", name="wait_seconds", label="x", buckets=[0.0, -0.0], value=1)
@example(kind="gauge", name="queue_Gauge", label="x", buckets=None, value=-1.0)
def test_the_schema_allows_a_record_exactly_when_the_service_takes_it(
    kind: str, name: str, label: str, buckets: list[float] | None, value: float
) -> None:
    record: dict[str, Any] = {"metric_type": kind, "name": name, "value": value, "labels": {label: "v"}}
    if buckets is not None and kind == "histogram":
        record["buckets"] = buckets
    valid, said = outcome(record)
    if said.startswith("409"):  # a built-in's or a reserved name: refused either way
        return
    assert valid == (said == "200"), (record, said)


def test_fields_of_another_type_are_refused_by_both() -> None:
    for record in (
        {"metric_type": "counter", "name": "a_total", "value": 1, "operation": "inc"},
        {"metric_type": "gauge", "name": "a", "value": 1, "buckets": [1]},
        {"metric_type": "histogram", "name": "a", "value": 1, "operation": None},
    ):
        valid, said = outcome(record)
        assert not valid, record
        assert said.startswith("422"), (record, said)
