"""The brute-force guard: one address's failing attempts cool down after repeated failures; its valid keys,
and other addresses, never notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import FakeClock
from tests.helpers import value


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_repeated_failures_throttle_that_address_failing_attempts_only(
    db_app: FastAPI, admin: httpx.AsyncClient, key_for: Callable[..., Any], clock: FakeClock
) -> None:
    good = {"authorization": f"Bearer {await key_for('viewer')}"}
    bad = {"authorization": "Bearer agb_aaaaaaaaaaaaaaaa_guess"}
    async with client_at(db_app, "203.0.113.7") as attacker, client_at(db_app, "198.51.100.2") as bystander:
        for _ in range(10):  # the limit in the default settings
            assert (await attacker.get("/api/v1/monitoring/summary", headers=bad)).status_code == 401
        blocked = await attacker.get("/api/v1/monitoring/summary", headers=bad)
        assert blocked.status_code == 429
        assert blocked.json()["error"] == "TooManyFailures"
        assert 1 <= int(blocked.headers["retry-after"]) <= 300
        # A valid key from the same address (a colleague behind the same NAT) is served.
        assert (await attacker.get("/api/v1/monitoring/summary", headers=good)).status_code == 200
        assert (await attacker.get("/api/v1/monitoring/summary", headers=bad)).status_code == 429
        # Another address, even one that also failed once, is not affected.
        assert (await bystander.get("/api/v1/monitoring/summary", headers=bad)).status_code == 401
        assert (await bystander.get("/api/v1/monitoring/summary", headers=good)).status_code == 200
        clock.advance(301)
        assert (await attacker.get("/api/v1/monitoring/summary", headers=bad)).status_code == 401
    text = (await admin.get("/api/v1/monitoring/metrics")).text
    assert value(text, "auth_failures_total", reason="throttled") == 2
    assert value(text, "auth_failures_total", reason="unknown") == 12


async def test_failures_spread_out_in_time_do_not_block(
    db_app: FastAPI, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    async with client_at(db_app, "192.0.2.1") as client:
        for _ in range(30):
            response = await client.get("/api/v1/monitoring/summary", headers={"x-api-key": "wrong"})
            assert response.status_code == 401
            clock.advance(7)  # about 9 failures per 60 s window
