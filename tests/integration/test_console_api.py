"""The console's API on the real server: sign-in and its cookie, CSRF, a session that ends at sign-out and
at once when its key is revoked, roles, the embedded history (the same from every worker, tiles equal to
/summary), spend equal to the ledger, and the charts read from a real Prometheus when one is configured."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Prometheus, Service, scrape_config, wait_until

pytestmark = pytest.mark.integration

HISTORY = {"AGENTIC_HISTORY_INTERVAL_SECONDS": "1"}
_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def sign_in(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    _CLIENTS.append(client)
    answer = client.post("/api/v1/console/session", json={"key": key})
    assert answer.status_code == 200, answer.text
    client.headers["x-csrf-token"] = answer.json()["csrf_token"]
    return client


def panels(client: httpx.Client, range_: str = "15m") -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/console/overview", params={"range": range_})
    assert answer.status_code == 200, answer.text
    return {p["title"]: p for p in answer.json()["panels"]}


def query(url: str, key: str, agent: str = "assistant") -> None:
    answer = httpx.post(
        f"{url}/api/v1/agents/{agent}/query",
        json={"query": f"hello {time.monotonic_ns()}"},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def test_sign_in_cookie_csrf_sign_out_and_revocation(tmp_path: Path) -> None:
    service = Service(tmp_path, env=HISTORY)
    try:
        answer = httpx.post(
            f"{service.url}/api/v1/console/session", json={"key": service.admin_key}, timeout=10
        )
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; under TLS it is Secure
        assert service.admin_key not in cookie
        body = answer.json()
        assert body["role"] == "admin"
        assert "keys:admin" in body["permissions"]
        # A wrong key: the same 401 as the API's, counted as a failed authentication.
        wrong = httpx.post(f"{service.url}/api/v1/console/session", json={"key": "agb_wrong"}, timeout=10)
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "InvalidApiKey" or "API key" in wrong.json()["detail"]

        admin = sign_in(service.url, service.admin_key)
        created = admin.post("/api/v1/keys", json={"name": "console-user", "role": "user"})
        assert created.status_code == 201, created.text
        user_key, user_id = created.json()["key"], created.json()["id"]
        # Without the CSRF token a cookie request that changes something is refused; with it, it passes.
        bare = httpx.Client(base_url=service.url, cookies=admin.cookies, timeout=10)
        _CLIENTS.append(bare)
        refused = bare.post("/api/v1/keys", json={"name": "no-csrf", "role": "viewer"})
        assert refused.status_code == 403
        assert "x-csrf-token" in refused.json()["detail"]
        assert bare.get("/api/v1/keys").status_code == 200  # reading needs no token

        user = sign_in(service.url, user_key)
        assert user.get("/api/v1/console/session").json()["role"] == "user"
        assert user.get("/api/v1/keys").status_code == 403  # what the role may not do is not possible
        assert user.get("/api/v1/console/overview").status_code == 403  # no monitoring:read
        assert user.get("/api/v1/console/spend").status_code == 200
        # Revoking the key ends its console session at once.
        assert admin.delete(f"/api/v1/keys/{user_id}").status_code == 204
        assert user.get("/api/v1/console/session").status_code == 401
        # Sign-out ends the session: the same cookie no longer works.
        stolen = dict(admin.cookies)
        assert admin.delete("/api/v1/console/session").status_code == 204
        assert httpx.get(f"{service.url}/api/v1/keys", cookies=stolen, timeout=10).status_code == 401
        # An expired session ends too.
        expiring = sign_in(service.url, service.admin_key)
        with sqlite3.connect(tmp_path / "data" / "agentic.db") as db:
            db.execute("UPDATE console_sessions SET expires_at = '2000-01-01 00:00:00.000000'")
        assert expiring.get("/api/v1/console/session").status_code == 401
    finally:
        service.stop()


def test_root_sends_a_browser_to_the_console_and_keeps_json_for_clients(tmp_path: Path) -> None:
    service = Service(tmp_path)
    try:
        browser = httpx.get(
            service.url + "/", headers={"accept": "text/html,application/xhtml+xml"}, timeout=10
        )
        assert browser.status_code == 303
        assert browser.headers["location"] == "/console/"
        client = httpx.get(service.url + "/", timeout=10)
        assert client.status_code == 200
        assert client.json()["service"] == "agentic-backend"
        page = httpx.get(service.url + "/console/", timeout=10)
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        for asset in ("app.js", "app.css", "vendor/uPlot.iife.min.js"):
            assert httpx.get(f"{service.url}/console/assets/{asset}", timeout=10).status_code == 200
        for escape in ("../app.py", "..%2Fapp.py", "index.html", "vendor/uPlot.LICENSE"):
            assert httpx.get(f"{service.url}/console/assets/{escape}", timeout=10).status_code == 404
    finally:
        service.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_embedded_history_is_the_same_from_every_worker_and_tiles_equal_the_summary(
    tmp_path: Path, workers: int
) -> None:
    service = Service(tmp_path, workers=workers, env=HISTORY)
    try:
        for _ in range(6):
            query(service.url, service.admin_key)
        time.sleep(3)  # a few samples
        for _ in range(4):
            query(service.url, service.admin_key)
        admin = sign_in(service.url, service.admin_key)
        got = wait_until(
            lambda: (p := panels(admin))["Request Rate"]["lines"] and p,
            timeout=20,
            what="a drawn Request Rate",
        )
        for title in ("Request Rate", "Request Latency", "Agent Query Rate", "API Cost", "Token Usage"):
            assert any(v for line in got[title]["lines"] for v in line["values"] if v), title

        # The graphs come from the stored history: every worker, on a new connection each, draws the same.
        # (The last point is each request's own moment; the grid of 15 s steps before it is the history.)
        def stored(client: httpx.Client) -> tuple[list[float], dict[tuple[str, str], list[float | None]]]:
            data = client.get("/api/v1/console/overview", params={"range": "15m"}).json()
            lines = {
                (p["title"], line["name"]): line["values"][:-1]
                for p in data["panels"]
                if p["kind"] == "graph"
                for line in p["lines"]
                if any(v is not None for v in line["values"][:-1])
            }
            return data["times"][:-1], lines

        wait_until(lambda: stored(admin)[1], timeout=40, what="a grid point after the start")
        views = []
        for _ in range(6):
            with httpx.Client(base_url=service.url, cookies=admin.cookies, timeout=10) as fresh:
                views.append(stored(fresh))
        latest = max(v[0][-1] for v in views)
        same = [v for v in views if v[0][-1] == latest]
        assert len(same) >= 3
        assert all(v == same[0] for v in same)
        assert same[0][1]
        # The stat tiles are this moment's: they equal /summary's totals.
        summary = admin.get("/api/v1/monitoring/summary").json()
        tiles = panels(admin, "1h")
        assert tiles["Total Cost"]["lines"][0]["values"][0] == pytest.approx(
            summary["costs"]["total_dollars"], abs=1e-9
        )
        tokens = {line["name"]: line["values"][0] for line in tiles["Total Tokens"]["lines"]}
        assert tokens == {
            "input": summary["costs"]["total_input_tokens"],
            "output": summary["costs"]["total_output_tokens"],
        }
        requests = tiles["HTTP Requests"]["lines"][0]["values"][0]
        assert summary["http"]["requests_total"] <= requests <= summary["http"]["requests_total"] + 3
    finally:
        service.stop()


def test_spend_equals_the_ledger(tmp_path: Path) -> None:
    service = Service(tmp_path)
    try:
        admin = sign_in(service.url, service.admin_key)
        other = admin.post(
            "/api/v1/keys", json={"name": "spender", "role": "user", "monthly_budget_dollars": 5}
        )
        other_key = other.json()["key"]
        for agent in ("assistant", "assistant", "researcher"):
            query(service.url, service.admin_key, agent)
        query(service.url, other_key)
        month = datetime.now(UTC).strftime("%Y-%m")
        spend = admin.get("/api/v1/console/spend", params={"month": month}).json()
        start = f"{month}-01T00:00:00Z"
        ledger = admin.get("/api/v1/usage", params={"since": start, "limit": 0}).json()["totals"]
        assert spend["totals"]["cost_dollars"] == ledger["cost_dollars"]
        assert spend["totals"]["queries"] == ledger["queries"] == 4
        assert spend["totals"]["input_tokens"] == ledger["input_tokens"]
        assert sum(r["cost_dollars"] for r in spend["by_model"]) == pytest.approx(ledger["cost_dollars"])
        assert {r["name"] for r in spend["by_agent_type"]} == {"assistant", "researcher"}
        by_key = {r["name"]: r for r in spend["by_key"]}
        assert by_key["spender"]["queries"] == 1
        assert by_key["spender"]["budget_dollars"] == 5
        assert by_key["spender"]["spent_dollars"] == pytest.approx(by_key["spender"]["cost_dollars"])
        # A key without usage:admin sees only itself.
        mine = sign_in(service.url, other_key).get("/api/v1/console/spend").json()
        assert [r["name"] for r in mine["by_key"]] == ["spender"]
        assert mine["totals"]["queries"] == 1
        # Keyset pages of the ledger: newest first, no row twice, none lost.
        first = admin.get("/api/v1/usage", params={"limit": 2}).json()["records"]
        second = admin.get("/api/v1/usage", params={"limit": 2, "before_id": first[-1]["id"]}).json()[
            "records"
        ]
        ids = [r["id"] for r in first + second]
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == 4
        assert admin.get("/api/v1/console/spend", params={"month": "2026-13"}).status_code == 422
    finally:
        service.stop()


def test_charts_read_prometheus_with_the_dashboards_queries(tmp_path: Path) -> None:
    service = Service(tmp_path / "service")
    prometheus = Prometheus(tmp_path / "prometheus", scrape_config(f"127.0.0.1:{service.port}"))
    service.stop()
    service = Service(
        tmp_path / "service",
        port=service.port,
        admin_key=service.admin_key,
        env={"AGENTIC_PROMETHEUS_URL": prometheus.url},
    )
    try:
        query(service.url, service.admin_key)
        prometheus.wait_for(
            "sum(agent_queries_total) >= 1"
        )  # a series Prometheus has seen: it counts from here
        for _ in range(5):
            query(service.url, service.admin_key)
        prometheus.wait_for("sum(agent_queries_total) >= 6")
        admin = sign_in(service.url, service.admin_key)
        got = wait_until(
            lambda: (
                (p := admin.get("/api/v1/console/overview", params={"range": "15m"}).json())["panels"][2][
                    "lines"
                ]
                and p
            ),
            timeout=30,
            what="Request Rate from Prometheus",
        )
        assert got["source"] == "prometheus"
        by_title = {p["title"]: p for p in got["panels"]}
        assert by_title["HTTP Requests"]["lines"][0]["values"][0] >= 5
        assert "sum by (endpoint) (rate(http_requests_total[60s]))" in by_title["Request Rate"]["queries"]
        prometheus.stop()
        down = admin.get("/api/v1/console/overview")
        assert down.status_code == 503
        assert "Prometheus" in down.json()["detail"]
    finally:
        service.stop()
        prometheus.stop()
