"""The custom metrics' byte budget (AGENTIC_CUSTOM_METRICS_MAX_BYTES): the largest shapes the other caps
allow cannot take more than it, in one process or across workers sharing a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring.custom import series_cost
from agentic_backend.monitoring.errors import SeriesLimitExceeded
from agentic_backend.monitoring.schemas import CustomMetricRecord, parse_record
from agentic_backend.monitoring.service import Telemetry

BUDGET = 256 * 1024


def widest(i: int, *, histogram: bool) -> CustomMetricRecord:
    """The largest series the other caps allow: 10 labels of 1,024 characters (and 64 buckets)."""
    labels = {f"label_{n}": f"{i:06d}" + "x" * 1018 for n in range(10)}
    if histogram:
        buckets = [float(b) for b in range(1, 65)]
        return parse_record(
            dict(metric_type="histogram", name="wide", value=1, labels=labels, buckets=buckets)
        )
    return parse_record(dict(metric_type="gauge", name="wide_level", value=1, labels=labels))


def custom_bytes(telemetry: Telemetry) -> int:
    return len(render(telemetry.custom.snapshot()).encode())


@pytest.mark.parametrize(
    ("histogram", "budget"), [(False, BUDGET), (True, 8 * BUDGET)], ids=["gauge", "histogram"]
)
def test_the_widest_series_stop_at_the_byte_budget_with_a_reason(histogram: bool, budget: int) -> None:
    telemetry = Telemetry(Settings(custom_metrics_max_bytes=budget))
    accepted, refusal = 0, ""
    for i in range(1000):
        try:
            telemetry.custom.record([widest(i, histogram=histogram)])
        except SeriesLimitExceeded as exc:
            refusal = exc.detail
            break
        accepted += 1
    assert "AGENTIC_CUSTOM_METRICS_MAX_BYTES" in refusal
    assert accepted >= 2
    assert telemetry.custom.bytes_used <= budget
    # The exposition of what was accepted is within the budget; one more series would not have been.
    assert custom_bytes(telemetry) <= budget
    one = series_cost(
        telemetry.custom.registry.families()[0].spec,
        telemetry.custom.registry.families()[0].series()[0].labels,
    )
    assert telemetry.custom.bytes_used + one > budget
    # A refused series changes nothing; a record to an existing series still works.
    before = custom_bytes(telemetry)
    telemetry.custom.record([widest(0, histogram=histogram)])
    assert custom_bytes(telemetry) == pytest.approx(before, abs=64)


def test_a_batch_that_would_pass_the_budget_is_refused_whole() -> None:
    telemetry = Telemetry(Settings(custom_metrics_max_bytes=BUDGET))
    with pytest.raises(SeriesLimitExceeded):
        telemetry.custom.record([widest(i, histogram=False) for i in range(100)])
    assert telemetry.custom.registry.series_count() == 0
    assert telemetry.custom.bytes_used == 0


def test_the_budget_holds_across_workers_sharing_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    workers = [
        Telemetry(Settings(metrics_multiprocess_dir=folder, custom_metrics_max_bytes=BUDGET))
        for _ in range(2)
    ]
    accepted = 0
    for i in range(200):
        try:
            workers[i % 2].custom.record([widest(i, histogram=False)])
        except SeriesLimitExceeded:
            continue
        accepted += 1
    assert accepted >= 2
    for worker in workers:
        text = render(worker.custom.snapshot())
        assert len(text.encode()) <= BUDGET
        assert worker.custom.bytes_used <= BUDGET
        assert text.count("wide_level{") == accepted
        worker.close()


async def test_health_degrades_when_the_byte_budget_is_nearly_spent() -> None:
    from agentic_backend.monitoring.health import metrics_checks

    telemetry = Telemetry(Settings(custom_metrics_max_bytes=BUDGET))
    check = next(c for c in metrics_checks(telemetry, 10_000) if c.name == "custom_metrics")
    assert (await check.check()).status == "ok"
    for i in range(1000):
        try:
            telemetry.custom.record([widest(i, histogram=False)])
        except SeriesLimitExceeded:
            break
    result = await check.check()
    assert result.status == "degraded"
    assert "MiB" in result.detail
