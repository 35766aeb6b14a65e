from __future__ import annotations

import pytest

from agentic_backend.monitoring.summary import estimate_percentiles


def test_percentiles_interpolate_within_buckets_like_histogram_quantile() -> None:
    edges = (1.0, 2.0, 4.0)
    # 10 observations in (0,1], 10 in (1,2], none above.
    result = estimate_percentiles(edges, [10, 10, 0, 0], total_sum=20.0)
    assert result.p50 == pytest.approx(1.0)
    assert result.p90 == pytest.approx(1.8)
    assert result.p99 == pytest.approx(1.98)
    assert result.mean == pytest.approx(1.0)


def test_percentiles_in_the_inf_bucket_report_the_highest_edge() -> None:
    result = estimate_percentiles((1.0, 2.0), [0, 0, 5], total_sum=50.0)
    assert result.p50 == 2.0
    assert result.p99 == 2.0


def test_no_observations_give_nulls() -> None:
    result = estimate_percentiles((1.0,), [0, 0], total_sum=0.0)
    assert (result.p50, result.p90, result.p99, result.mean) == (None, None, None, None)
