from __future__ import annotations

import gzip
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_backend.metricstore.exposition import iter_exposition, render, stream_exposition
from agentic_backend.metricstore.families import MetricSpec, MetricType, format_float
from agentic_backend.metricstore.registry import Registry
from agentic_backend.metricstore.storage import LocalPages
from tests.helpers import samples


def make_registry() -> Registry:
    return Registry(LocalPages(), max_series_per_metric=10_000)


def test_label_values_and_help_are_escaped_and_read_back_unchanged() -> None:
    reg = make_registry()
    family = reg.register(
        MetricSpec("odd_total", MetricType.COUNTER, 'Help with \\ and "quotes"\nnewline.', ("v",))
    )
    tricky = 'a "quoted" \\ back\nslash } { , = ü 😀'
    family.labels(tricky).inc(3)
    for openmetrics in (False, True):
        text = render(reg.snapshot(), openmetrics=openmetrics)
        assert samples(text, openmetrics=openmetrics)[("odd_total", frozenset({("v", tricky)}))] == 3.0


def test_openmetrics_names_counter_families_without_total_and_ends_with_eof() -> None:
    reg = make_registry()
    reg.register(MetricSpec("jobs_total", MetricType.COUNTER, "Jobs.")).labels().inc()
    text = render(reg.snapshot(), openmetrics=True)
    assert "# TYPE jobs counter\n" in text
    assert "jobs_total 1.0\n" in text
    assert text.endswith("# EOF\n")
    assert "# TYPE jobs_total counter\n" in render(reg.snapshot())


@pytest.mark.parametrize(
    ("value", "text"),
    [(math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (1.5, "1.5"), (1e21, "1e+21")],
)
def test_special_floats_use_prometheus_spelling(value: float, text: str) -> None:
    assert format_float(value) == text
    reg = make_registry()
    reg.register(MetricSpec("g", MetricType.GAUGE, "G.")).labels().set(value)
    assert f"g {text}\n" in render(reg.snapshot())


def test_chunks_hold_at_most_the_chunk_size_and_join_to_the_whole() -> None:
    reg = make_registry()
    family = reg.register(MetricSpec("c_total", MetricType.COUNTER, "C.", ("i",)))
    for i in range(2500):
        family.labels(str(i)).inc()
    chunks = list(iter_exposition(reg.snapshot(), chunk=1000))
    assert len(chunks) == 3
    assert max(chunk.count("\nc_total{") for chunk in chunks) <= 1000
    assert "".join(chunks) == render(reg.snapshot())


async def test_streamed_gzip_decompresses_to_the_plain_exposition() -> None:
    reg = make_registry()
    family = reg.register(MetricSpec("c_total", MetricType.COUNTER, "C.", ("i",)))
    for i in range(3000):
        family.labels(str(i)).inc(i)
    compressed = b"".join(
        [chunk async for chunk in stream_exposition(reg.snapshot(), openmetrics=False, gzip=True)]
    )
    assert gzip.decompress(compressed).decode() == render(reg.snapshot())


label_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(label_values, label_values, finite), min_size=1, max_size=20),
    st.lists(st.floats(min_value=0, max_value=1e6), max_size=30),
)
def test_any_label_values_and_numbers_round_trip_through_both_formats(
    rows: list[tuple[str, str, float]], observations: list[float]
) -> None:
    reg = make_registry()
    gauge = reg.register(MetricSpec("g", MetricType.GAUGE, "G.", ("a", "b")))
    hist = reg.register(MetricSpec("h_seconds", MetricType.HISTOGRAM, "H.", ("a",), (0.5, 1.0, 10.0)))
    expected: dict[tuple[str, str], float] = {}
    for a, b, v in rows:
        gauge.labels(a, b).set(v)
        expected[(a, b)] = v
    series = hist.labels(rows[0][0])
    for o in observations:
        series.observe(o)  # type: ignore[attr-defined]
    for openmetrics in (False, True):
        got = samples(render(reg.snapshot(), openmetrics=openmetrics), openmetrics=openmetrics)
        for (a, b), v in expected.items():
            assert got[("g", frozenset({("a", a), ("b", b)}))] == v
        count = got[("h_seconds_count", frozenset({("a", rows[0][0])}))]
        assert count == len(observations)
        inf_bucket = got[("h_seconds_bucket", frozenset({("a", rows[0][0]), ("le", "+Inf")}))]
        assert inf_bucket == count
