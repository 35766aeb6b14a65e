"""The proof of scaling out: three replicas (``serve --workers 2`` each) on one PostgreSQL and one Redis,
scraped by a real Prometheus through file-based discovery (``stack up --api a,b,c`` writes the targets
file, as monitoring/targets/replicas.json.example shows), with loadgen on every replica and keys with a
budget and a rate limit used across all of them while one replica restarts.

Then: a ledger row for every 200; Prometheus' Total Cost over the replicas equals the ledger; the rate
limit held exactly and the budget within one model call; a revoked key refused by every replica at once;
``active_sessions`` not multiplied by the replicas; every dashboard panel plausible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from agentic_backend import stack
from agentic_backend.billing.pricing import NANOS_PER_DOLLAR, Pricer
from agentic_backend.loadgen import Stats, generate
from tests.databases import POSTGRES_ADMIN_DSN
from tests.integration.faults import RedisServer
from tests.integration.harness import Service, require_binary, stack_options, wait_until
from tests.integration.test_stack_proof import (
    MONITORING,
    check_plausible,
    panel_queries,
    query,
    values,
)

pytestmark = pytest.mark.integration

ADMIN_KEY = "replicas-admin-key-" + "r" * 40


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (the replicas share it; nothing stops the server)."""
    name = f"agentic_replicas_{uuid.uuid4().hex[:10]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_three_replicas_on_postgresql_and_redis(tmp_path: Path, postgres_url: str) -> None:
    require_binary("prometheus")
    redis = RedisServer(tmp_path / "redis")
    env = {
        "AGENTIC_DATABASE_URL": postgres_url,
        "AGENTIC_REDIS_URL": redis.url,
        "AGENTIC_SESSION_IDLE_TTL_SECONDS": "600",
    }
    replicas: list[Service] = []
    running = None
    try:
        replicas.append(Service(tmp_path / "r1", workers=2, env=env, admin_key=ADMIN_KEY))  # migrates first
        for n in (2, 3):
            replicas.append(Service(tmp_path / f"r{n}", workers=2, env=env, admin_key=ADMIN_KEY))
        api = ",".join(f"127.0.0.1:{r.port}" for r in replicas)
        options = dataclasses.replace(stack_options(MONITORING, tmp_path / "stack", replicas[0]), api=api)
        running = stack.up(options)
        prometheus = running.url("prometheus")
        wait_until(
            lambda: len(values(query(prometheus, 'up{job="agentic-backend"} == 1'))) == 3,
            timeout=30,
            what="Prometheus to discover and scrape the three replicas",
        )

        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        first = replicas[0].url

        def make_key(name: str, **limits: float) -> tuple[int, dict[str, str]]:
            body = {"name": name, "role": "user", **limits}
            created = httpx.post(f"{first}/api/v1/keys", json=body, headers=admin, timeout=10).json()
            return created["id"], {"authorization": f"Bearer {created['key']}"}

        limited_id, limited = make_key("shared-rpm", rpm_limit=12)
        budgeted_id, budgeted = make_key("shared-budget", monthly_budget_dollars=0.002)
        answered: dict[str, list[dict[str, object]]] = {"limited": [], "budgeted": []}
        codes: dict[str, list[int]] = {"limited": [], "budgeted": []}
        stop = threading.Event()

        def probe(kind: str, headers: dict[str, str], agent: str) -> None:
            # Round robin over the replicas, a new connection each time (so over their workers too).
            for n in itertools.count():
                if stop.is_set():
                    return
                url = replicas[n % 3].url
                try:
                    response = httpx.post(
                        f"{url}/api/v1/agents/{agent}/query",
                        json={"query": f"{kind} question {n}"},
                        headers=headers,
                        timeout=30,
                    )
                except httpx.TransportError:
                    continue  # the replica restarting: nothing was answered
                codes[kind].append(response.status_code)
                if response.status_code == 200:
                    answered[kind].append(response.json())
                time.sleep(0.05)

        probes = [
            threading.Thread(target=probe, args=("limited", limited, "assistant")),
            threading.Thread(target=probe, args=("budgeted", budgeted, "researcher")),
            threading.Thread(target=probe, args=("budgeted", budgeted, "researcher")),
        ]
        for thread in probes:
            thread.start()

        loaded = [Stats() for _ in replicas]

        async def load() -> list[object]:
            return await asyncio.gather(
                *(
                    generate(r.url, ADMIN_KEY, rate=8, duration=14, quiet=True, stats=stats)
                    for r, stats in zip(replicas, loaded, strict=True)
                )
            )

        loader = threading.Thread(target=lambda: asyncio.run(load()))
        loader.start()
        # A replica restarts mid-run (its counters start again from zero), once loadgen is sending to
        # each (it makes its keys first: on a busy machine that can take seconds).
        wait_until(
            lambda: all(sum(stats.outcomes.values()) >= 20 for stats in loaded),
            timeout=60,
            what="loadgen to be sending to every replica",
        )
        replicas[1].stop()
        replicas[1] = Service(tmp_path / "r2", workers=2, env=env, admin_key=ADMIN_KEY, port=replicas[1].port)
        loader.join(timeout=120)
        stop.set()
        for thread in probes:
            thread.join(timeout=60)

        # The rate limit held across six workers on three replicas: exactly 12 within the minute.
        assert codes["limited"].count(200) == 12, codes["limited"]
        assert set(codes["limited"]) <= {200, 429}
        # The budget held within one model call, two clients racing on three replicas.
        assert set(codes["budgeted"]) <= {200, 402}, codes["budgeted"]
        assert 402 in codes["budgeted"]
        pricer = Pricer({})
        calls = [
            pricer.price(str(a["model"]), int(s["input_tokens"]), int(s["output_tokens"])).nanodollars
            for a in answered["budgeted"]
            for s in a["steps"]  # type: ignore[attr-defined]
            if s["kind"] == "model"
        ]
        spent = httpx.get(
            f"{first}/api/v1/usage", params={"key_id": budgeted_id, "limit": 0}, headers=admin
        ).json()["totals"]
        assert spent["cost_dollars"] * NANOS_PER_DOLLAR <= 0.002 * NANOS_PER_DOLLAR + max(calls)
        # A ledger row for every 200 the probes received (loadgen's own answers are in the totals below).
        for kind, key_id in (("limited", limited_id), ("budgeted", budgeted_id)):
            usage = httpx.get(
                f"{first}/api/v1/usage", params={"key_id": key_id, "limit": 0}, headers=admin
            ).json()
            successes = usage["totals"]["queries"]
            assert successes >= len(answered[kind])

        # Total Cost over the three replicas (one restarted) equals the ledger's.
        ledger = httpx.get(f"{first}/api/v1/usage", params={"limit": 0}, headers=admin).json()["totals"]
        (total_cost,) = [expr for title, _, expr in panel_queries() if title == "Total Cost"]

        def total_cost_matches_the_ledger() -> bool:
            panel = values(query(prometheus, total_cost))
            return bool(panel) and panel[0] == pytest.approx(ledger["cost_dollars"], rel=0.05)

        wait_until(total_cost_matches_the_ledger, timeout=30, what="Total Cost to equal the ledger's")

        # Revoked on one replica: refused by every replica (each of its workers) at once.
        revoked_id, revoked = make_key("to-revoke")
        for replica in replicas:
            assert httpx.get(f"{replica.url}/api/v1/usage", headers=revoked).status_code == 200
        assert httpx.delete(f"{replicas[2].url}/api/v1/keys/{revoked_id}", headers=admin).status_code == 204
        refused = [
            httpx.get(f"{replica.url}/api/v1/usage", headers=revoked).status_code
            for replica in replicas
            for _ in range(4)
        ]
        # 401, or 429 once loadgen's deliberate bad keys have the shared guard throttle this address's
        # failing attempts: refused either way, by every worker of every replica.
        assert set(refused) <= {401, 429}, refused

        # active_sessions counts the shared database: the dashboard shows it once, not once per replica.
        time.sleep(3)
        (sessions_panel,) = [expr for title, _, expr in panel_queries() if "active_sessions" in expr]
        per_replica = values(query(prometheus, 'active_sessions{job="agentic-backend"}'))
        assert len(per_replica) == 3
        assert max(per_replica) > 0
        assert values(query(prometheus, sessions_panel)) == [max(per_replica)]

        for title, unit, expr in panel_queries():
            check_plausible(title, unit, values(query(prometheus, expr)))
        print(
            f"\nreplicas: rate limit 12/min -> {codes['limited'].count(200)} served of "
            f"{len(codes['limited'])}; budget $0.002 -> spent ${spent['cost_dollars']:.6f} "
            f"(largest call ${max(calls) / NANOS_PER_DOLLAR:.6f}); ledger ${ledger['cost_dollars']:.6f} "
            f"over {ledger['queries']} queries"
        )
    finally:
        if running is not None:
            stack.down(running.run_dir)
        for replica in replicas:
            replica.stop()
        redis.stop()
