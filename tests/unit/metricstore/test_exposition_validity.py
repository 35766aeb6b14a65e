"""Every record /record accepts leaves both expositions valid for three independent consumers:
prometheus_client's strict OpenMetrics parser, its text-format parser, and ``promtool check metrics``
(Prometheus' own parser and linter). Whatever would break one of them is refused at record time with a
4xx and a sentence, and changes nothing.

The names are generated around what collides: every suffix a family reserves in either format
(``_total``, ``_created``, ``_bucket``, ``_count``, ``_sum``, ``_info``, ``_gcount``, ``_gsum``), the
built-in metrics' names, bucket edges out of order, duplicated, negative or not finite, reserved label
names (``le``, ``quantile``, ``__*``), and every character that needs escaping. Hypothesis runs
derandomized in CI (tests/conftest.py), and the explicit examples cover each class whatever it draws.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentic_backend.core.config import Settings
from agentic_backend.core.errors import AppError
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring.schemas import parse_record
from agentic_backend.monitoring.service import Telemetry
from tests.helpers import EXAMPLES, parse_openmetrics, parse_text
from tests.integration.harness import require_binary

SUFFIXES = ["", "_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum", "_seconds"]
STEMS = [
    "jobs",
    "queue",
    "http_requests",
    "api_cost_dollars",
    "cache_size_bytes",
    "agent_query_duration_seconds",
]
LABEL_NAMES = ["le", "quantile", "kind", "__name__", "__x", "job", "fooBar", "a_b", "_"]
HOSTILE_TEXT = [
    '"',
    "\\",
    "\n",
    "\r",
    "\t",
    "}",
    "{",
    ",",
    "=",
    "# EOF",
    "\x00",
    "é",
    "\u2028",
    "\ufeff",
    " ",
]

names = st.builds(
    lambda stem, suffix, extra: stem + extra + suffix,
    st.sampled_from(STEMS),
    st.sampled_from(SUFFIXES),
    st.sampled_from(["", "_total", "_created", "_x"]),
)
hostile = st.lists(st.sampled_from(HOSTILE_TEXT) | st.text(max_size=3), max_size=4).map("".join)
records = st.fixed_dictionaries(
    {
        "metric_type": st.sampled_from(["counter", "gauge", "histogram"]),
        "name": names,
        "value": st.sampled_from([0.0, 1.0, 2.5, 1e300, -1.0, 5e-324]),
    },
    optional={
        "labels": st.dictionaries(st.sampled_from(LABEL_NAMES), hostile, max_size=3),
        "buckets": st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1e-5, 1e22, 2.0, -0.0]), max_size=4),
        "help": hostile,
        "operation": st.sampled_from(["set", "inc", "dec"]),
    },
)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )


def record_all(telemetry: Telemetry, batch: list[dict[str, Any]]) -> list[str | None]:
    """Record each record alone: None for each accepted one, the refusal's message for the others."""
    outcomes: list[str | None] = []
    for item in batch:
        try:
            telemetry.custom.record([parse_record(item)])
        except ValidationError as exc:  # refused by the record's model (the router makes it a 422)
            outcomes.append(f"model: {exc}")
        except AppError as exc:
            outcomes.append(f"{exc.status_code} {exc.detail}")
        else:
            outcomes.append(None)
    for outcome in outcomes:
        if outcome is not None and outcome[:1].isdigit():
            assert 400 <= int(outcome[:3]) < 500, outcome
            assert outcome.endswith((".", ")")), outcome  # a sentence
    return outcomes


def assert_valid(telemetry: Telemetry) -> None:
    openmetrics = render(telemetry.snapshot(), openmetrics=True)
    text = render(telemetry.snapshot())
    list(parse_openmetrics(openmetrics))  # raises on anything the specification forbids
    list(parse_text(text))
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


def test_the_built_in_metrics_alone_are_valid_for_every_consumer(promtool: str) -> None:
    telemetry = Telemetry(Settings())
    assert_valid(telemetry)


@pytest.mark.parametrize(
    ("batch", "accepted"), EXAMPLES, ids=["+".join(r["name"] for r in batch) for batch, _ in EXAMPLES]
)
def test_each_class_of_collision_is_refused_and_the_rest_stays_valid(
    batch: list[dict[str, Any]], accepted: list[bool], promtool: str
) -> None:
    telemetry = Telemetry(Settings())
    outcomes = record_all(telemetry, batch)
    assert [o is None for o in outcomes] == accepted, outcomes
    assert_valid(telemetry)


@settings(max_examples=120, deadline=None)
@given(batch=st.lists(records, min_size=1, max_size=6))
def test_any_sequence_of_records_leaves_every_exposition_valid(batch: list[dict[str, Any]]) -> None:
    require_binary("promtool")
    telemetry = Telemetry(Settings())
    outcomes = record_all(telemetry, batch)
    event("some accepted" if None in outcomes else "all refused")  # `pytest --hypothesis-show-statistics`
    assert_valid(telemetry)
