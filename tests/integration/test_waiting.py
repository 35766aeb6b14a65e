"""Waiting, on the real server: a write that finds another process holding SQLite's lock waits without
holding the event loop (the worker's other requests are answered meanwhile), then succeeds, or gets a JSON
503 once the timeout has passed; the wait is in ``database_wait_seconds{kind="lock"}``; every worker
publishes its event-loop lag under a small worker number; a loop held by a blocking call shows in
``event_loop_lag_seconds``."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import samples
from tests.integration.harness import Service, wait_until

pytestmark = pytest.mark.integration


def _metric(url: str, name: str, **labels: str) -> float:
    got = samples(httpx.get(f"{url}/api/v1/monitoring/metrics", timeout=10).text)
    return sum(v for (n, ls), v in got.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def _hold_write_lock(database: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another process's writer, as the CLI or another worker would be: BEGIN IMMEDIATE takes SQLite's
    write lock, kept for ``seconds``."""

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None, timeout=10)
        try:
            connection.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(seconds)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


async def test_a_write_waiting_for_another_process_lock_leaves_the_loop_free(tmp_path: Path) -> None:
    service = Service(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            assert (await client.post("/api/v1/sessions", headers=service.headers)).status_code == 201
            waited_before = _metric(service.url, "database_wait_seconds_count", kind="lock")
            held = threading.Event()
            holder = _hold_write_lock(tmp_path / "data" / "agentic.db", 1.5, held)
            assert held.wait(10)
            started = time.monotonic()
            write = asyncio.create_task(client.post("/api/v1/sessions", headers=service.headers))
            await asyncio.sleep(0.2)  # the write is waiting for the lock now
            # A route that needs no database (/health does: it waits for the worker's one SQLite
            # connection, which the waiting write holds).
            health_times = []
            for _ in range(5):
                t = time.monotonic()
                health = await client.get("/")
                health_times.append(time.monotonic() - t)
                assert health.status_code == 200
            assert not write.done(), "the write should still wait for the lock"
            created = await write
            await asyncio.to_thread(holder.join)
        assert created.status_code == 201, created.text
        assert time.monotonic() - started >= 1.2  # it waited for the lock, and then wrote
        # One worker, so the same event loop answered GET / while its write waited: within 100 ms,
        # where a busy handler sleeping on the loop held every request for the whole 1.5 s.
        assert max(health_times) < 0.1, health_times
        assert _metric(service.url, "database_wait_seconds_count", kind="lock") > waited_before
        # The wait's length is in the histogram: at least one observation above 1 s.
        over_a_second = _metric(service.url, "database_wait_seconds_count", kind="lock") - _metric(
            service.url, "database_wait_seconds_bucket", kind="lock", le="1.0"
        )
        assert over_a_second >= 1
    finally:
        service.stop()


def test_a_lock_held_past_the_timeout_is_a_json_503(tmp_path: Path) -> None:
    service = Service(tmp_path, env={"AGENTIC_DATABASE_TIMEOUT_SECONDS": "0.5"})
    try:
        httpx.post(f"{service.url}/api/v1/sessions", headers=service.headers, timeout=10).raise_for_status()
        held = threading.Event()
        holder = _hold_write_lock(tmp_path / "data" / "agentic.db", 2.0, held)
        assert held.wait(10)
        answer = httpx.post(f"{service.url}/api/v1/sessions", headers=service.headers, timeout=10)
        holder.join()
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]
        assert "locked" in answer.json()["detail"]
        assert "Retry-After" in answer.headers
        # And once the lock is gone, writes go through again.
        created = httpx.post(f"{service.url}/api/v1/sessions", headers=service.headers, timeout=10)
        assert created.status_code == 201
    finally:
        service.stop()


def test_every_worker_publishes_its_loop_lag_under_a_small_number(tmp_path: Path) -> None:
    service = Service(tmp_path, workers=2)
    try:

        def both_workers() -> bool:
            text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
            got = samples(text)
            workers = {
                dict(labels)["worker"]
                for (name, labels), value in got.items()
                if name == "event_loop_lag_seconds_count" and value > 0
            }
            return workers == {"0", "1"}

        wait_until(both_workers, timeout=30, what="both workers' event_loop_lag_seconds")
        # Why a timer was late, by worker and cause: every series there from start-up.
        late = samples(httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text)
        assert {
            (dict(labels)["worker"], dict(labels)["cause"])
            for (name, labels), _ in late.items()
            if name == "event_loop_late_seconds_count"
        } == {(worker, cause) for worker in ("0", "1") for cause in ("busy", "cpu_wait", "other")}
        # Every checkout of a connection is timed: 20 reads of the ledger (writes on SQLite go through the
        # group commit's own connection, which no request waits for).
        for _ in range(20):
            httpx.get(f"{service.url}/api/v1/usage", headers=service.headers, timeout=10).raise_for_status()
        assert _metric(service.url, "database_wait_seconds_count", kind="pool") >= 20
    finally:
        service.stop()


def test_serve_warns_when_workers_outnumber_the_cpus(tmp_path: Path) -> None:
    """Four workers on one CPU wait for it in turn (run-queue delay, not a held loop): serve says so."""
    with socket.socket() as taken:  # uvicorn then exits at once: it cannot bind
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "AGENTIC_DATA_DIR": str(tmp_path)}
        env.pop("AGENTIC_DATABASE_URL", None)
        command = [sys.executable, "-m", "agentic_backend", "serve", "--port", str(port), "--workers", "4"]
        pinned = subprocess.run(
            ["taskset", "-c", "0", *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert "warning: --workers 4 on 1 CPU(s)" in pinned.stderr
        single = subprocess.run(
            ["taskset", "-c", "0", *command[:-1], "1"], env=env, capture_output=True, text=True, timeout=60
        )
        assert "warning: --workers" not in single.stderr
