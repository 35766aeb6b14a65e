"""The traffic generator against the real service: within seconds every seed metric has data."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agentic_backend.loadgen import generate
from tests.helpers import samples
from tests.integration.harness import Service

pytestmark = pytest.mark.integration


async def test_loadgen_feeds_every_seed_metric(tmp_path: Path) -> None:
    service = Service(tmp_path)
    try:
        stats = await generate(service.url, service.admin_key, rate=40, duration=5, quiet=True)
        statuses = {status for (_, status) in stats.outcomes}
        assert {200, 401, 403, 429, 502} <= statuses, stats.outcomes
        async with httpx.AsyncClient(timeout=10) as client:
            got = samples((await client.get(f"{service.url}/api/v1/monitoring/metrics")).text)

        def total(name: str, **labels: str) -> float:
            return sum(
                v for (n, ls), v in got.items() if n == name and all((k, w) in ls for k, w in labels.items())
            )

        for status in ("success", "error", "rejected"):
            assert total("agent_queries_total", status=status) > 0, status
        assert total("agent_query_duration_seconds_count") > 0
        assert total("api_cost_dollars_total") > 0
        assert total("api_tokens_total", type="input") > 0
        assert total("api_tokens_total", type="output") > 0
        assert total("cache_operations_total", operation="get", result="hit") > 0
        assert total("cache_operations_total", operation="get", result="miss") > 0
        assert total("cache_size_bytes") > 0
        assert total("auth_attempts_total", result="failure") > 0
        assert total("auth_attempts_total", result="success") > 0
        assert total("permission_checks_total", result="denied") > 0
        assert total("permission_checks_total", result="allowed") > 0
        assert total("active_sessions") > 0
        assert total("http_requests_total") > 100
        assert total("loadgen_events_total") > 0
    finally:
        service.stop()
