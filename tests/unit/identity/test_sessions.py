"""Sessions: ownership, idle expiry on a clock the test moves, and the active_sessions gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import httpx
from fastapi import FastAPI

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.core.db import Database
from agentic_backend.sessions.service import SessionService
from tests.conftest import ClientFor, FakeClock
from tests.helpers import value


async def active_sessions(client: httpx.AsyncClient) -> float | None:
    return value((await client.get("/api/v1/monitoring/metrics")).text, "active_sessions")


async def test_a_session_belongs_to_the_key_that_made_it(
    anonymous: httpx.AsyncClient, key_for: Callable[..., Any]
) -> None:
    alice = {"authorization": f"Bearer {await key_for('user', 'alice')}"}
    bob = {"authorization": f"Bearer {await key_for('user', 'bob')}"}
    created = await anonymous.post("/api/v1/sessions", headers=alice)
    assert created.status_code == 201
    session_id = created.json()["id"]
    assert (await anonymous.get(f"/api/v1/sessions/{session_id}", headers=alice)).status_code == 200
    for method in ("GET", "DELETE"):
        response = await anonymous.request(method, f"/api/v1/sessions/{session_id}", headers=bob)
        assert response.status_code == 404, method
        assert response.json()["error"] == "SessionNotFound"
    assert (await anonymous.delete(f"/api/v1/sessions/{session_id}", headers=alice)).status_code == 204
    assert (await anonymous.get(f"/api/v1/sessions/{session_id}", headers=alice)).status_code == 404


async def test_history_is_kept_in_order(
    db_app: FastAPI, anonymous: httpx.AsyncClient, key_for: Callable[..., Any]
) -> None:
    headers = {"authorization": f"Bearer {await key_for('user')}"}
    session_id = (await anonymous.post("/api/v1/sessions", headers=headers)).json()["id"]
    service: SessionService = state.of(db_app).sessions
    principal = await state.of(db_app).keys.verify(headers["authorization"].removeprefix("Bearer "))
    await service.append(principal[0], session_id, [("user", "hello"), ("assistant", "héllo 👋")])
    got = (await anonymous.get(f"/api/v1/sessions/{session_id}", headers=headers)).json()
    assert [(m["role"], m["content"]) for m in got["messages"]] == [
        ("user", "hello"),
        ("assistant", "héllo 👋"),
    ]


async def test_sessions_expire_when_idle_and_the_gauge_follows(
    anonymous: httpx.AsyncClient, key_for: Callable[..., Any], clock: FakeClock
) -> None:
    headers = {"authorization": f"Bearer {await key_for('user')}"}
    first = (await anonymous.post("/api/v1/sessions", headers=headers)).json()["id"]
    second = (await anonymous.post("/api/v1/sessions", headers=headers)).json()["id"]
    assert await active_sessions(anonymous) == 2
    clock.advance(400)
    assert (
        await anonymous.get(f"/api/v1/sessions/{first}", headers=headers)
    ).status_code == 200  # use extends it
    clock.advance(400)  # second: 800 s idle > 600 s TTL; first: 400 s idle
    assert (await anonymous.get(f"/api/v1/sessions/{second}", headers=headers)).status_code == 404
    assert await active_sessions(anonymous) == 1
    clock.advance(601)
    assert (await anonymous.get(f"/api/v1/sessions/{first}", headers=headers)).status_code == 404
    assert await active_sessions(anonymous) == 0


async def test_the_gauge_is_right_after_a_restart_and_across_replicas(
    make_settings: Callable[..., Settings], database_url: str, clock: FakeClock, client_for: ClientFor
) -> None:
    settings = make_settings(database_url=database_url)
    async with client_for(create_app(settings, clock=clock)) as replica_a:
        for _ in range(3):
            assert (await replica_a.post("/api/v1/sessions")).status_code == 201
        # A second replica on the same database sees the same count, and so would a restarted one.
        async with client_for(create_app(settings, clock=clock)) as replica_b:
            assert await active_sessions(replica_b) == 3
            assert (await replica_b.post("/api/v1/sessions")).status_code == 201
            assert await active_sessions(replica_b) == 4  # its own session, at once
            # Another replica's, at replica_a's next count of the database: scrapes in between do not count.
            assert await active_sessions(replica_a) == 3
            clock.advance(SessionService.RECOUNT_AFTER)
            assert await active_sessions(replica_a) == 4
            assert await active_sessions(replica_b) == 4


async def test_a_slow_count_of_the_sessions_is_repeated_less_often(clock: FakeClock) -> None:
    """Counting is a scan of every unexpired session: a count that takes 50 ms is repeated after 5 s, not
    after 1, so that the gauge never keeps the database busy more than 1 % of the time."""
    counted: list[float] = []

    class SlowCount(SessionService):
        async def count_active(self) -> int:
            counted.append(clock.monotonic())
            await asyncio.sleep(0)
            clock.advance(0.05)
            return len(counted)

    service = SlowCount(cast(Database, None), clock, timedelta(minutes=10))
    assert await service.active() == 1
    for _ in range(4):
        clock.advance(1)
        assert await service.active() == 1
    clock.advance(1.5)
    assert await service.active() == 2
    assert len(counted) == 2


async def test_bad_session_ids_are_4xx(anonymous: httpx.AsyncClient, key_for: Callable[..., Any]) -> None:
    headers = {"authorization": f"Bearer {await key_for('user')}"}
    assert (await anonymous.get("/api/v1/sessions/not-a-uuid", headers=headers)).status_code == 422
    assert (await anonymous.get("/api/v1/sessions/" + "9" * 5000, headers=headers)).status_code == 422
    unknown = await anonymous.get("/api/v1/sessions/6f1c1c56-2b4e-4d3a-9a55-3c2b1d0e9f11", headers=headers)
    assert unknown.status_code == 404
