"""Helpers shared by unit and integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis.asyncio as aioredis
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

ROOT = Path(__file__).resolve().parents[1]  # the repository
MONITORING = ROOT / "monitoring"
MONITORING_API = "/api/v1/monitoring"


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body, and ("comment", text) for comment lines."""
    events: list[tuple[str, Any]] = []
    kind, data = "message", []
    for line in lines:
        if line.startswith(":"):
            events.append(("comment", line[1:].strip()))
        elif line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and data:
            events.append((kind, json.loads("\n".join(data))))
            kind, data = "message", []
    return events


REDIS_URL = os.environ.get("AGENTIC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def missing(message: str) -> NoReturn:
    """What a test needs is not on this machine: it fails in CI (where .ci/run installs everything) and is
    skipped elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def require_redis() -> None:
    """The machine's Redis answers, or the test fails in CI (and is skipped elsewhere)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        missing(f"Redis at {REDIS_URL} is not reachable ({exc}); .ci/run starts it")
    finally:
        await client.aclose()


# Reading an exposition back, with prometheus_client's parsers (an independent implementation).


def samples(text: str, *, openmetrics: bool = False) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by sample name and label set."""
    parse = parse_openmetrics if openmetrics else parse_text
    found = {}
    for family in parse(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels."""
    return samples(text).get((name, frozenset(labels.items())))


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every sample named ``name`` whose labels include these."""
    return sum(
        count
        for (sample, found), count in samples(text).items()
        if sample == name and labels.items() <= found
    )


# Every class of hostile custom-metric record (name collisions, escapes), each batch with what a service
# must do with each record (A: accepted, R: refused); the unit and the Prometheus tests both run them.
A, R = True, False  # accepted, refused
EXAMPLES: list[tuple[list[dict[str, Any]], list[bool]]] = [
    # A gauge named like another family's _created series, and the other way round.
    (
        [
            {"metric_type": "counter", "name": "jobs_total", "value": 1},
            {"metric_type": "gauge", "name": "jobs_created", "value": 1},
        ],
        [A, R],
    ),
    (
        [
            {"metric_type": "gauge", "name": "jobs_created", "value": 1},
            {"metric_type": "counter", "name": "jobs_total", "value": 1},
        ],
        [A, R],
    ),
    (
        [
            {"metric_type": "histogram", "name": "job", "value": 1},
            {"metric_type": "gauge", "name": "job_created", "value": 1},
        ],
        [A, R],
    ),
    # _info, _gcount, _gsum and the built-ins' families.
    (
        [
            {"metric_type": "gauge", "name": "build_info", "value": 1},
            {"metric_type": "gauge", "name": "build", "value": 1},
        ],
        [A, A],
    ),
    ([{"metric_type": "gauge", "name": "http_requests", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "http_requests_created", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "agent_query_duration_seconds_created", "value": 1}], [R]),
    # Bucket edges: negative (OpenMetrics forbids _sum then), duplicated (also as 0 and -0); unordered
    # ones are sorted (JSON Schema can say "each once" but not "in order", and the published schema is
    # exact).
    ([{"metric_type": "histogram", "name": "delta", "value": 1, "buckets": [-1, 0, 1]}], [R]),
    ([{"metric_type": "histogram", "name": "delta", "value": 1, "buckets": [1, 1]}], [R]),
    ([{"metric_type": "histogram", "name": "delta", "value": 1, "buckets": [0, -0.0]}], [R]),
    ([{"metric_type": "histogram", "name": "delta", "value": 1, "buckets": [2, 1]}], [A]),
    ([{"metric_type": "histogram", "name": "tiny", "value": 1e-6, "buckets": [1e-5, 1e22]}], [A]),
    # Reserved label names per type, and names promtool's linter refuses.
    ([{"metric_type": "gauge", "name": "depth", "value": 1, "labels": {"le": "1"}}], [R]),
    ([{"metric_type": "counter", "name": "c_total", "value": 1, "labels": {"quantile": "0.5"}}], [R]),
    ([{"metric_type": "gauge", "name": "queueDepth", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "depth", "value": 1, "labels": {"queueName": "a"}}], [R]),
    ([{"metric_type": "gauge", "name": "job_count", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "job_sum", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "job_bucket", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "latency_ms", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "latency_milliseconds", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "queue_gauge", "value": 1}], [R]),
    ([{"metric_type": "gauge", "name": "rule:depth", "value": 1}], [R]),
    # Every escape case, in label values and help text.
    (
        [
            {
                "metric_type": "gauge",
                "name": "esc",
                "value": 1,
                "labels": {"v": '\\"\n\r\t}{,=# EOF\x00\u2028'},
                "help": 'a\\b"c\nd\re',
            }
        ],
        [A],
    ),
    ([{"metric_type": "gauge", "name": "blank_help", "value": 1, "help": "   "}], [A]),
]
