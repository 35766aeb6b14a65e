"""Identity over real HTTP: two workers sharing PostgreSQL, keys made by the CLI, sessions counted once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.databases import database_url  # noqa: F401  (the fixture)
from tests.helpers import value
from tests.integration.harness import Service, wait_until

pytestmark = pytest.mark.integration


def test_keys_sessions_and_revocation_across_workers(tmp_path: Path, database_url: str) -> None:  # noqa: F811
    service = Service(tmp_path, workers=2, env={"AGENTIC_DATABASE_URL": database_url})
    try:
        env = {**os.environ, "AGENTIC_DATABASE_URL": database_url, "AGENTIC_DATA_DIR": str(tmp_path / "data")}
        made = subprocess.run(
            [sys.executable, "-m", "agentic_backend", "keys", "create", "--name", "app", "--role", "user"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        user = {"x-api-key": made.stdout.strip()}
        with httpx.Client(base_url=service.url, timeout=10) as client:
            # New connections spread over both workers.
            ids = [client.post("/api/v1/sessions", headers=user).json()["id"] for _ in range(6)]
            assert len(set(ids)) == 6

            def counted() -> float:
                text = httpx.get(f"{service.url}/api/v1/monitoring/metrics", timeout=10).text
                return value(text, "active_sessions")

            # A worker counts the database at most once a second (less often where a count is slow), adding
            # its own creations in between, as the metric's help says: the worker that created none has
            # all six once its next count is due. Then every scrape says 6, whichever worker answers.
            wait_until(
                lambda: all(counted() == 6 for _ in range(4)),
                timeout=10,
                what="four scrapes in a row with active_sessions == 6",
            )
            summary = client.get("/api/v1/monitoring/summary", headers=service.headers).json()
            assert summary["active_sessions"] == 6
            assert summary["permissions"]["by_permission"]["sessions:write"]["allowed"] == 6
            key_id = next(
                k["id"]
                for k in client.get("/api/v1/keys", headers=service.headers).json()
                if k["name"] == "app"
            )
            assert client.delete(f"/api/v1/keys/{key_id}", headers=service.headers).status_code == 204
            for _ in range(6):  # whichever worker answers
                assert (
                    httpx.get(f"{service.url}/api/v1/sessions/{ids[0]}", headers=user, timeout=10).status_code
                    == 401
                )
    finally:
        service.stop()
