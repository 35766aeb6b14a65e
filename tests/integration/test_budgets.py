"""Budget reservations on real processes: a worker killed in the middle of a model call leaves nothing
reserved once its reservation has expired (the next reservation for the key releases it)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Service, children, reservations, wait_until

pytestmark = pytest.mark.integration


def test_a_worker_killed_mid_call_leaves_no_reservation(tmp_path: Path) -> None:
    agents = tmp_path / "agents.json"
    agents.write_text(json.dumps([{"name": "slow", "model": "gpt-4o-mini", "timeout_seconds": 3}]))
    env = {
        "AGENTIC_AGENTS_FILE": str(agents),
        "AGENTIC_SIM_LATENCY_MS": "1500",
        "AGENTIC_BUDGET_RESERVATION_GRACE_SECONDS": "1",
    }
    service = Service(tmp_path, workers=2, env=env)
    try:
        created = httpx.post(
            f"{service.url}/api/v1/keys",
            json={"name": "budgeted", "role": "user", "monthly_budget_dollars": 1.0},
            headers=service.headers,
        ).json()
        key_id, headers = created["id"], {"authorization": f"Bearer {created['key']}"}
        database = tmp_path / "data" / "agentic.db"
        outcome: list[object] = []

        def query() -> None:
            try:
                outcome.append(
                    httpx.post(
                        f"{service.url}/api/v1/agents/slow/query",
                        json={"query": "in flight when its worker dies"},
                        headers=headers,
                        timeout=30,
                    )
                )
            except httpx.HTTPError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=query)
        thread.start()
        wait_until(lambda: reservations(database, key_id)[1] == 1, timeout=10, what="the call's reservation")
        killed_at = time.monotonic()
        for worker in children(service.popen.pid):  # whichever worker runs the call dies
            os.kill(worker, signal.SIGKILL)
        thread.join(timeout=30)
        assert outcome, "the query did not end"
        assert isinstance(outcome[0], httpx.HTTPError), outcome  # its connection was cut, no answer
        amount, rows = reservations(database, key_id)
        assert amount > 0
        assert rows == 1  # nobody settled it

        wait_until(lambda: len(children(service.popen.pid)) == 2, timeout=30, what="workers restarted")
        # The reservation expires 3 s (the agent's timeout) + 1 s (the grace) after it was made.
        time.sleep(max(0.0, 4.5 - (time.monotonic() - killed_at)))
        answer = httpx.post(
            f"{service.url}/api/v1/agents/slow/query",
            json={"query": "the next one"},
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert reservations(database, key_id) == (0, 0)
        usage = httpx.get(
            f"{service.url}/api/v1/usage", params={"key_id": key_id}, headers=service.headers
        ).json()
        assert usage["totals"]["queries"] == 1  # the killed query never reached the ledger
    finally:
        service.stop()
