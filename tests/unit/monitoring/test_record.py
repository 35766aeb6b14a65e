"""POST /record: what is accepted shows at /metrics at once; what is refused says why and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from tests.helpers import MONITORING_API, parse_openmetrics, samples, value

RECORD = f"{MONITORING_API}/record"
SEED_EXAMPLE = {
    "metric_type": "counter",
    "name": "custom_events_total",
    "value": 1,
    "labels": {"event_type": "signup"},
}


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get(f"{MONITORING_API}/metrics")
    assert response.status_code == 200
    return response.text


async def test_the_seed_example_is_recorded_and_exported(client: httpx.AsyncClient) -> None:
    response = await client.post(RECORD, json=SEED_EXAMPLE)
    assert response.status_code == 200
    assert response.json()["metrics"][0]["value"] == 1.0
    await client.post(RECORD, json=SEED_EXAMPLE)
    assert value(await metrics_text(client), "custom_events_total", event_type="signup") == 2.0


async def test_gauge_operations_and_histogram_observations(client: httpx.AsyncClient) -> None:
    batch = [
        {"metric_type": "gauge", "name": "queue_depth", "value": 10},
        {"metric_type": "gauge", "name": "queue_depth", "value": 3, "operation": "inc"},
        {"metric_type": "gauge", "name": "queue_depth", "value": 5, "operation": "dec"},
        {"metric_type": "histogram", "name": "job_seconds", "value": 0.3, "buckets": [0.1, 1, 10]},
        {"metric_type": "histogram", "name": "job_seconds", "value": 4},
    ]
    response = await client.post(RECORD, json=batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 5
    assert body["metrics"][2]["value"] == 8.0
    assert body["metrics"][4]["count"] == 2.0
    text = await metrics_text(client)
    assert value(text, "queue_depth") == 8.0
    assert value(text, "job_seconds_bucket", le="1.0") == 1.0
    assert value(text, "job_seconds_bucket", le="10.0") == 2.0
    assert value(text, "job_seconds_sum") == pytest.approx(4.3)


async def test_help_text_is_taken_from_the_first_record(client: httpx.AsyncClient) -> None:
    await client.post(RECORD, json={**SEED_EXAMPLE, "help": "Sign-ups and such."})
    assert "# HELP custom_events_total Sign-ups and such.\n" in await metrics_text(client)


BAD_RECORDS: list[tuple[str, Any, int, str]] = [
    ("invalid name", {**SEED_EXAMPLE, "name": "9lives_total"}, 422, "must match"),
    ("name with dash", {**SEED_EXAMPLE, "name": "my-events_total"}, 422, "must match"),
    ("counter without _total", {**SEED_EXAMPLE, "name": "custom_events"}, 422, "must end in _total"),
    ("gauge with _total", {**SEED_EXAMPLE, "metric_type": "gauge"}, 422, "only counters end in _total"),
    ("built-in metric", {**SEED_EXAMPLE, "name": "http_requests_total"}, 409, "built-in"),
    (
        "built-in histogram series",
        {"metric_type": "gauge", "name": "http_request_duration_seconds_bucket", "value": 1},
        409,
        "built-in",
    ),
    (
        "OpenMetrics family of a built-in",
        {"metric_type": "gauge", "name": "http_requests", "value": 1},
        409,
        "built-in",
    ),
    ("Prometheus' own up", {"metric_type": "gauge", "name": "up", "value": 1}, 409, "reserved"),
    ("service prefix", {"metric_type": "gauge", "name": "agentic_backend_x", "value": 1}, 409, "reserved"),
    ("negative counter", {**SEED_EXAMPLE, "value": -1}, 422, "only goes up"),
    ("negative observation", {"metric_type": "histogram", "name": "h", "value": -1}, 422, ">= 0"),
    ("bad label name", {**SEED_EXAMPLE, "labels": {"event-type": "x"}}, 422, "label name"),
    ("reserved label name", {**SEED_EXAMPLE, "labels": {"__name__": "x"}}, 422, "label name"),
    (
        "le on a histogram",
        {"metric_type": "histogram", "name": "h", "value": 1, "labels": {"le": "1"}},
        422,
        "'le'",
    ),
    ("label value not a string", {**SEED_EXAMPLE, "labels": {"event_type": 5}}, 422, "labels.event_type"),
    ("too many labels", {**SEED_EXAMPLE, "labels": {f"l{i}": "x" for i in range(11)}}, 422, "at most 10"),
    ("huge label value", {**SEED_EXAMPLE, "labels": {"event_type": "x" * 1025}}, 422, "at most 1024"),
    ("unknown type", {**SEED_EXAMPLE, "metric_type": "summary"}, 422, "metric_type"),
    ("missing value", {"metric_type": "counter", "name": "a_total"}, 422, "value"),
    ("value as text", {**SEED_EXAMPLE, "value": "1"}, 422, "value"),
    ("value as bool", {**SEED_EXAMPLE, "value": True}, 422, "value"),
    ("unknown field", {**SEED_EXAMPLE, "colour": "red"}, 422, "colour"),
    ("operation on a counter", {**SEED_EXAMPLE, "operation": "dec"}, 422, "gauges only"),
    (
        "buckets on a gauge",
        {"metric_type": "gauge", "name": "g", "value": 1, "buckets": [1]},
        422,
        "histograms only",
    ),
    (
        "duplicate buckets",
        {"metric_type": "histogram", "name": "h", "value": 1, "buckets": [2, 1, 2.0]},
        422,
        "once",
    ),
    ("no buckets", {"metric_type": "histogram", "name": "h", "value": 1, "buckets": []}, 422, "buckets"),
    ("empty batch", [], 422, "empty"),
    ("a string body", "hello", 422, "JSON object"),
    ("a number body", 42, 422, "JSON object"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
async def test_bad_records_are_refused_with_a_reason(
    client: httpx.AsyncClient, case: str, body: Any, status: int, message: str
) -> None:
    before = await metrics_text(client)
    response = await client.post(RECORD, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert set(response.json()) == {"error", "detail"}
    after = await metrics_text(client)
    assert {k for k in samples(after) if not k[0].startswith("http_")} == {
        k for k in samples(before) if not k[0].startswith("http_")
    }


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_nan_and_infinities_are_refused(client: httpx.AsyncClient, literal: str) -> None:
    body = f'{{"metric_type": "gauge", "name": "g", "value": {literal}}}'
    response = await client.post(RECORD, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "finite" in response.json()["detail"]


BIG = 1.5e308  # finite; twice it is not


@pytest.mark.parametrize(
    ("first", "then", "shown", "expected"),
    [
        ({"metric_type": "counter", "name": "big_total", "value": BIG}, {}, "big_total", BIG),
        ({"metric_type": "gauge", "name": "big", "value": BIG, "operation": "inc"}, {}, "big", BIG),
        ({"metric_type": "gauge", "name": "big", "value": BIG, "operation": "dec"}, {}, "big", -BIG),
        (
            {"metric_type": "gauge", "name": "big", "value": -BIG, "operation": "set"},
            {"operation": "dec", "value": BIG},
            "big",
            -BIG,
        ),
        ({"metric_type": "histogram", "name": "big_seconds", "value": BIG}, {}, "big_seconds_sum", BIG),
    ],
)
async def test_a_record_that_would_overflow_to_infinity_is_refused(
    client: httpx.AsyncClient, first: dict[str, Any], then: dict[str, Any], shown: str, expected: float
) -> None:
    """Finite values whose sum is not: the series would stay infinite for good (a counter's rate NaN from
    then on), so the record is refused and the series keeps its value; in a batch, nothing is applied."""
    assert (await client.post(RECORD, json=first)).status_code == 200
    again = {**first, **then}
    refused = await client.post(RECORD, json=again)
    assert refused.status_code == 409, refused.text  # valid alone; it conflicts with the stored value
    assert "infinite" in refused.json()["detail"]
    in_batch = await client.post(RECORD, json=[SEED_EXAMPLE, again])
    assert in_batch.status_code == 409
    assert in_batch.json()["detail"].startswith("record 1 ")
    text = await metrics_text(client)
    assert value(text, shown) == expected
    assert value(text, "custom_events_total", event_type="signup") is None  # the batch applied nothing
    parse_openmetrics(
        (
            await client.get(f"{MONITORING_API}/metrics", headers={"accept": "application/openmetrics-text"})
        ).text
    )


async def test_conflicting_type_labels_and_buckets_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.post(RECORD, json=SEED_EXAMPLE)).status_code == 200
    as_gauge = await client.post(
        RECORD, json={**SEED_EXAMPLE, "name": "custom_events_total", "metric_type": "gauge"}
    )
    assert as_gauge.status_code == 422  # gauges cannot end in _total, checked first
    other_labels = await client.post(RECORD, json={**SEED_EXAMPLE, "labels": {"plan": "pro"}})
    assert other_labels.status_code == 409
    assert "has labels ['event_type']" in other_labels.json()["detail"]
    hist = {"metric_type": "histogram", "name": "lat_seconds", "value": 1, "buckets": [1, 2]}
    assert (await client.post(RECORD, json=hist)).status_code == 200
    assert (await client.post(RECORD, json={**hist, "buckets": [1, 3]})).status_code == 409
    as_counter = await client.post(RECORD, json={"metric_type": "gauge", "name": "lat_seconds", "value": 1})
    assert as_counter.status_code == 409
    assert "was recorded as a histogram" in as_counter.json()["detail"]
    # A gauge whose name is one of the histogram's series is refused too.
    clash = await client.post(RECORD, json={"metric_type": "gauge", "name": "lat_seconds_count", "value": 1})
    assert clash.status_code == 409


async def test_a_batch_is_applied_all_or_nothing(client: httpx.AsyncClient) -> None:
    batch = [SEED_EXAMPLE, SEED_EXAMPLE, {**SEED_EXAMPLE, "value": -5}]
    response = await client.post(RECORD, json=batch)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("record 2 ('custom_events_total'): ")
    assert value(await metrics_text(client), "custom_events_total", event_type="signup") is None


async def test_a_batch_with_conflicting_definitions_is_refused(client: httpx.AsyncClient) -> None:
    batch = [
        {"metric_type": "gauge", "name": "thing", "value": 1},
        {"metric_type": "histogram", "name": "thing", "value": 1},
    ]
    assert (await client.post(RECORD, json=batch)).status_code == 409


async def test_series_caps_per_metric_and_in_total(make_settings: Any, client_for: Any) -> None:
    app = create_app(make_settings(custom_metrics_max_series_per_metric=3, custom_metrics_max_series_total=5))
    async with client_for(app) as client:
        for i in range(3):
            assert (
                await client.post(RECORD, json={**SEED_EXAMPLE, "labels": {"event_type": str(i)}})
            ).status_code == 200
        fourth = await client.post(RECORD, json={**SEED_EXAMPLE, "labels": {"event_type": "3"}})
        assert fourth.status_code == 422
        assert fourth.json()["error"] == "SeriesLimitExceeded"
        assert "MAX_SERIES_PER_METRIC" in fourth.json()["detail"]
        # An existing series still takes updates.
        assert (
            await client.post(RECORD, json={**SEED_EXAMPLE, "labels": {"event_type": "0"}})
        ).status_code == 200
        batch = [{"metric_type": "gauge", "name": "g", "value": 1, "labels": {"k": str(i)}} for i in range(3)]
        over_total = await client.post(RECORD, json=batch)
        assert over_total.status_code == 422
        assert "MAX_SERIES_TOTAL" in over_total.json()["detail"]
        assert value((await client.get(f"{MONITORING_API}/metrics")).text, "g", k="0") is None


async def test_oversized_malformed_and_non_json_bodies(client: httpx.AsyncClient, settings: Settings) -> None:
    huge = json.dumps([SEED_EXAMPLE] * 20_000)
    assert len(huge) > settings.custom_metrics_max_body_bytes
    response = await client.post(RECORD, content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    too_many = await client.post(RECORD, json=[SEED_EXAMPLE] * 1001)
    assert too_many.status_code == 422
    assert "at most 1000" in too_many.json()["detail"]
    broken = await client.post(
        RECORD, content=b'{"metric_type": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["detail"]
    deep = await client.post(RECORD, content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert deep.status_code in (400, 413)
    binary = await client.post(RECORD, content=b"\xff\xfe\x00", headers={"content-type": "application/json"})
    assert binary.status_code == 400
    form = await client.post(RECORD, data={"name": "x"})
    assert form.status_code == 415
    assert "application/json" in form.json()["detail"]
    surrogate = '{"metric_type":"counter","name":"s_total","value":1,"labels":{"k":"\\ud800"}}'
    response = await client.post(RECORD, content=surrogate, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "surrogate" in response.json()["detail"]
    assert (await client.get(f"{MONITORING_API}/metrics")).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
record_like = st.fixed_dictionaries(
    {
        "metric_type": st.sampled_from(["counter", "gauge", "histogram", "other"]),
        "name": st.from_regex(r"[a-z_][a-z0-9_]{0,12}(_total)?", fullmatch=True) | st.text(max_size=15),
        "value": st.floats() | st.integers(min_value=-(10**20), max_value=10**20),
    },
    optional={
        "labels": st.dictionaries(st.text(max_size=8), st.text(max_size=12) | st.integers(), max_size=4),
        "operation": st.sampled_from(["set", "inc", "dec", "mul"]),
        "buckets": st.lists(st.floats(), max_size=5),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(record_like, min_size=1, max_size=5) | record_like | json_values)
async def test_no_input_causes_a_server_error_or_an_invalid_exposition(
    client: httpx.AsyncClient, body: Any
) -> None:
    # One app for every example: what earlier examples recorded must not spoil the exposition either.
    content = json.dumps(body, allow_nan=True)
    response = await client.post(RECORD, content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.json()["detail"]
    samples((await client.get(f"{MONITORING_API}/metrics")).text)
    openmetrics = await client.get(
        f"{MONITORING_API}/metrics", headers={"accept": "application/openmetrics-text"}
    )
    list(parse_openmetrics(openmetrics.text))
