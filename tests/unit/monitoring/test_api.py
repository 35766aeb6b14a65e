"""GET /metrics, /summary and /health."""

from __future__ import annotations

import asyncio
import gzip
import platform
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.metricstore.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from tests.helpers import MONITORING_API, parse_openmetrics, samples, value

METRICS = f"{MONITORING_API}/metrics"


async def test_metrics_is_prometheus_text_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get(METRICS, headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_TEXT
    assert "content-encoding" not in response.headers
    build = value(
        response.text, "agentic_backend_build_info", version="0.1.0", python_version=platform.python_version()
    )
    assert build == 1.0


async def test_metrics_speaks_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = await client.get(METRICS, headers={"accept": accept})
    assert response.headers["content-type"] == CONTENT_TYPE_OPENMETRICS
    names = {family.name for family in parse_openmetrics(response.text)}
    assert {"http_requests", "active_requests", "api_cost_dollars"} <= names


@pytest.mark.parametrize(
    ("accept_encoding", "compressed"),
    [("gzip", True), ("gzip, deflate, br", True), ("gzip;q=0", False), ("identity", False)],
)
async def test_metrics_is_gzipped_when_accepted(
    client: httpx.AsyncClient, accept_encoding: str, compressed: bool
) -> None:
    # Read the raw bytes: httpx would otherwise decompress transparently.
    async with client.stream("GET", METRICS, headers={"accept-encoding": accept_encoding}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert (response.headers.get("content-encoding") == "gzip") is compressed
    text = gzip.decompress(raw).decode() if compressed else raw.decode()
    assert "# TYPE http_requests_total counter" in text


async def test_metrics_token_protects_only_metrics(make_settings: Any, client_for: Any) -> None:
    app = create_app(make_settings(metrics_token="s3cret-token"))
    async with client_for(app) as client:
        missing = await client.get(METRICS)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "s3cret" not in missing.text
        wrong = await client.get(METRICS, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await client.get(METRICS, headers={"authorization": "Basic czNjcmV0"})).status_code == 401
        good = await client.get(METRICS, headers={"authorization": "Bearer s3cret-token"})
        assert good.status_code == 200
        assert (await client.get(f"{MONITORING_API}/health")).status_code == 200
        text = good.text
        assert value(text, "http_requests_total", method="GET", endpoint=METRICS, status="401") == 3.0


def test_production_refuses_a_short_metrics_token(make_settings: Any, client_for: Any) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        make_settings(environment="production", metrics_token="short", admin_api_key="a" * 40)


async def test_health_reports_components_and_no_secrets(make_settings: Any, client_for: Any) -> None:
    app = create_app(make_settings(metrics_token="a-secret-that-must-not-leak"))
    async with client_for(app) as client:
        response = await client.get(f"{MONITORING_API}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["metrics"]["status"] == "ok"
    assert body["version"] == "0.1.0"
    assert "a-secret" not in response.text


async def test_health_is_503_only_when_a_critical_component_is_down(
    client: httpx.AsyncClient, app: Any
) -> None:
    from agentic_backend.monitoring.health import HealthCheck
    from agentic_backend.monitoring.schemas import ComponentHealth

    async def down() -> ComponentHealth:
        return ComponentHealth(status="down", detail="unreachable")

    async def broken() -> ComponentHealth:
        raise RuntimeError("password=hunter2")

    state.of(app).health_checks = [
        *state.of(app).health_checks,
        HealthCheck("optional", down, critical=False),
    ]
    response = await client.get(f"{MONITORING_API}/health")
    assert (response.status_code, response.json()["status"]) == (200, "degraded")
    state.of(app).health_checks = [*state.of(app).health_checks, HealthCheck("database", broken)]
    response = await client.get(f"{MONITORING_API}/health")
    assert (response.status_code, response.json()["status"]) == (503, "down")
    assert response.json()["components"]["database"]["detail"] == "check failed: RuntimeError"
    assert "hunter2" not in response.text


async def test_liveness_never_asks_the_database_and_readiness_does(
    client: httpx.AsyncClient, app: Any
) -> None:
    from agentic_backend.monitoring.health import HealthCheck
    from agentic_backend.monitoring.schemas import ComponentHealth

    assert (await client.get(f"{MONITORING_API}/ready")).status_code == 200
    asked: list[str] = []

    async def database_down() -> ComponentHealth:
        asked.append("database")
        return ComponentHealth(status="down", detail="unreachable")

    state.of(app).health_checks = [HealthCheck("database", database_down)]
    live = await client.get(f"{MONITORING_API}/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert asked == []  # liveness asked nothing of the database
    ready = await client.get(f"{MONITORING_API}/ready")
    assert (ready.status_code, ready.json()["status"]) == (503, "down")
    assert asked == ["database"]
    openapi = (await client.get("/openapi.json")).json()["paths"]
    assert {f"{MONITORING_API}/live", f"{MONITORING_API}/ready"} <= set(openapi)


async def test_a_drain_file_makes_readiness_refuse_and_every_answer_close_its_connection(
    make_settings: Any, client_for: Any, tmp_path: Path
) -> None:
    drain_file = tmp_path / "draining"
    app = create_app(make_settings(drain_file=drain_file))
    async with client_for(app) as client:
        drain = app.state.services.drain
        drain.interval = 0.01
        ready = await client.get(f"{MONITORING_API}/ready")
        assert ready.status_code == 200
        assert "connection" not in ready.headers
        drain_file.touch()
        await asyncio.sleep(0.1)  # the watcher's next look
        ready = await client.get(f"{MONITORING_API}/ready")
        assert ready.status_code == 503
        assert ready.json()["components"]["lifecycle"] == {
            "status": "down",
            "detail": "draining: this replica stops",
        }
        # Still serving, but every answer (errors and streams alike) tells the client to reconnect.
        for response in (
            await client.get(f"{MONITORING_API}/live"),
            await client.get(METRICS),
            await client.get("/no/such/route"),
        ):
            assert response.headers["connection"] == "close"
            assert response.status_code in (200, 404)
        health = await client.get(f"{MONITORING_API}/health")
        assert health.status_code == 200  # the components are fine: draining is readiness' business
        drain_file.unlink()
        await asyncio.sleep(0.1)
        again = await client.get(f"{MONITORING_API}/ready")
        assert again.status_code == 200
        assert "connection" not in again.headers


async def test_summary_reads_the_same_registry_as_metrics(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get(f"{MONITORING_API}/health")
    await client.get("/no/such/route")
    await client.post(
        f"{MONITORING_API}/record",
        json={"metric_type": "gauge", "name": "things", "value": 2, "labels": {"k": "v"}},
    )
    text = (await client.get(METRICS)).text
    summary = (await client.get(f"{MONITORING_API}/summary")).json()
    requests = sum(v for (name, _), v in samples(text).items() if name == "http_requests_total")
    # The summary request itself is counted once it has finished, so it sees what /metrics saw plus /metrics.
    assert summary["http"]["requests_total"] == requests + 1
    assert summary["http"]["by_status_class"]["4xx"] == 1
    assert summary["http"]["latency_seconds"]["p50"] > 0
    assert summary["http"]["active_requests"] == 1  # the summary request itself
    assert summary["custom_metrics"] == {"families": 1, "series": 1}
    assert summary["cache"]["hit_ratio"] is None
    assert summary["uptime_seconds"] >= 0


async def test_summary_schema_is_in_the_openapi_spec(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schema = spec["paths"][f"{MONITORING_API}/summary"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert schema["$ref"].endswith("/MonitoringSummary")
    assert {"http", "agents", "costs", "cache", "auth", "permissions"} <= set(
        spec["components"]["schemas"]["MonitoringSummary"]["properties"]
    )
    assert "requestBody" in spec["paths"][f"{MONITORING_API}/record"]["post"]


async def test_unknown_routes_and_methods_get_clear_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"
    response = await client.delete(METRICS)
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowed"
    assert response.headers["allow"] == "GET, HEAD"


async def test_the_index_points_to_docs_health_and_metrics(client: httpx.AsyncClient) -> None:
    body = (await client.get("/")).json()
    assert body["service"] == "agentic-backend"
    for link in ("docs", "health", "metrics"):
        assert (await client.get(body[link])).status_code == 200


@pytest.mark.parametrize("path", ["/", f"{MONITORING_API}/health", METRICS, "/openapi.json"])
async def test_head_is_answered_wherever_get_is(client: httpx.AsyncClient, path: str) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert ("content-length" in head.headers) == ("content-length" in got.headers)  # /metrics streams
    if path in ("/", "/openapi.json"):  # the same body each time (the health check's changes)
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


async def test_head_is_refused_where_get_is_and_counted_as_head(client: httpx.AsyncClient) -> None:
    refused = await client.head(f"{MONITORING_API}/record")  # POST only
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert (await client.head("/api/v1/nothing-here")).status_code == 404
    await client.head("/")
    text = (await client.get(METRICS)).text
    assert value(text, "http_requests_total", method="HEAD", endpoint="/", status="200") == 1
    assert (
        value(text, "http_requests_total", method="HEAD", endpoint=f"{MONITORING_API}/record", status="405")
        == 1
    )
