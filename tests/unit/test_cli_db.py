"""``agentic-backend db upgrade``, as the Helm chart's migration Job runs it: it brings the schema up to
date, waits (``--wait``) for a database that is not accepting connections yet, and fails the release
loudly (exit 1, the reason on stderr, no secret) when it cannot."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from typer.testing import CliRunner

from agentic_backend.cli import app


def test_it_migrates_and_says_so(tmp_path: Path) -> None:
    env = {"AGENTIC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3"}
    result = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    again = CliRunner().invoke(app, ["db", "upgrade"], env=env)  # idempotent
    assert again.exit_code == 0


def test_it_waits_for_an_unreachable_database_then_fails_loudly() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://agentic:s3cret-pass@127.0.0.1:{port}/agentic"
    began = time.monotonic()
    result = CliRunner().invoke(app, ["db", "upgrade", "--wait", "2"], env={"AGENTIC_DATABASE_URL": url})
    assert result.exit_code == 1
    assert time.monotonic() - began >= 2  # it waited for the database before giving up
    assert "migration failed" in result.output
    assert "s3cret-pass" not in result.output
