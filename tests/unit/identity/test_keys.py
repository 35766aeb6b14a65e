"""API key lifecycle over HTTP and through the CLI; bad key requests and bad credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.cli import app as cli_app
from agentic_backend.core.config import Settings
from tests.conftest import ADMIN_KEY, ClientFor, FakeClock


async def test_create_list_revoke_over_http(admin: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    created = await admin.post("/api/v1/keys", json={"name": "billing-app", "role": "user"})
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith("agb_")
    assert len(secret) > 50
    listed = (await admin.get("/api/v1/keys")).json()
    assert [k["name"] for k in listed] == ["admin", "billing-app"]
    assert secret not in (await admin.get("/api/v1/keys")).text
    assert all("key" not in k and "secret_hash" not in k for k in listed)

    session = await anonymous.post("/api/v1/sessions", headers={"authorization": f"Bearer {secret}"})
    assert session.status_code == 201
    assert (await admin.delete(f"/api/v1/keys/{body['id']}")).status_code == 204
    # Refused from the very next request.
    after = await anonymous.post("/api/v1/sessions", headers={"authorization": f"Bearer {secret}"})
    assert after.status_code == 401
    metrics = (await anonymous.get("/api/v1/monitoring/metrics")).text
    assert 'auth_failures_total{reason="revoked"} 1.0' in metrics
    revoked = [k for k in (await admin.get("/api/v1/keys")).json() if k["name"] == "billing-app"]
    assert revoked[0]["revoked_at"] is not None


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"name": "x", "role": "superuser"}, 422, "role"),
        ({"name": "", "role": "user"}, 422, "name"),
        ({"name": "   ", "role": "user"}, 422, "blank"),
        ({"name": "a" * 101, "role": "user"}, 422, "name"),
        ({"name": "tab\there", "role": "user"}, 422, "U+0009 at position 3"),
        # Names that would look like another in a list: a right-to-left override, a zero-width space,
        # an isolate, a byte-order mark, a line separator.
        ({"name": "invoice\u202etxt.exe", "role": "user"}, 422, "U+202E at position 7"),
        ({"name": "ad\u200bmin", "role": "user"}, 422, "U+200B"),
        ({"name": "\u2066admin\u2069", "role": "user"}, 422, "U+2066"),
        ({"name": "admin\ufeff", "role": "user"}, 422, "U+FEFF"),
        ({"name": "two\u2028lines", "role": "user"}, 422, "U+2028"),
        ({"name": "x", "role": "user", "extra": 1}, 422, "extra"),
        ({"role": "user"}, 422, "name"),
    ],
)
async def test_bad_key_requests_are_4xx_with_a_reason(
    admin: httpx.AsyncClient, body: Any, status: int, needle: str
) -> None:
    response = await admin.post("/api/v1/keys", json=body)
    assert response.status_code == status
    assert needle in response.json()["detail"]


async def test_duplicate_and_unicode_names(admin: httpx.AsyncClient) -> None:
    first = await admin.post("/api/v1/keys", json={"name": "équipe-données 🚀", "role": "viewer"})
    assert first.status_code == 201
    assert first.json()["name"] == "équipe-données 🚀"
    again = await admin.post("/api/v1/keys", json={"name": "équipe-données 🚀", "role": "user"})
    assert again.status_code == 409
    assert again.json()["error"] == "KeyNameTaken"
    assert (await admin.delete("/api/v1/keys/not-a-number")).status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer " + "a" * 100_00},
        {"x-api-key": "k" * 5000},
        {"authorization": "Bearer agb_ünïcödé_key".encode()},
        {"authorization": "Bearer"},
        {"authorization": "Bearer    "},
        {"authorization": "Token abc"},
        {"x-api-key": ""},
    ],
)
async def test_malformed_credentials_are_401_never_500(
    anonymous: httpx.AsyncClient, headers: dict[str, Any]
) -> None:
    response = await anonymous.get("/api/v1/monitoring/summary", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "InvalidApiKey"


async def test_the_configured_admin_key_works_and_a_generated_one_is_printed_once(
    make_settings: Callable[..., Settings],
    client_for: ClientFor,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    app = create_app(make_settings(admin_api_key=None, data_dir=tmp_path / "fresh"))
    async with client_for(app, key=None) as client:
        printed = capsys.readouterr().err
        key = next(line.strip() for line in printed.splitlines() if line.strip().startswith("agb_"))
        ok = await client.get("/api/v1/keys", headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        assert ok.json()[0]["role"] == "admin"
    # A second start with the same database creates and prints nothing.
    async with client_for(
        create_app(make_settings(admin_api_key=None, data_dir=tmp_path / "fresh")), key=None
    ):
        assert "agb_" not in capsys.readouterr().err


def test_production_refuses_a_weak_admin_key(make_settings: Callable[..., Settings]) -> None:
    token = "t" * 40
    with pytest.raises(ValueError, match="too weak"):
        make_settings(environment="production", admin_api_key="admin123", metrics_token=token)
    make_settings(environment="production", admin_api_key=ADMIN_KEY, metrics_token=token)


@pytest.mark.parametrize(
    ("admin", "token", "missing"),
    [
        (None, "t" * 40, "AGENTIC_ADMIN_API_KEY must"),
        (ADMIN_KEY, None, "AGENTIC_METRICS_TOKEN must"),
        (None, None, "AGENTIC_ADMIN_API_KEY and AGENTIC_METRICS_TOKEN must"),
    ],
)
def test_production_refuses_to_start_without_an_admin_key_and_a_metrics_token(
    admin: str | None, token: str | None, missing: str
) -> None:
    # From the environment, as serve reads it; nothing secret in the message.
    env = {"AGENTIC_ENVIRONMENT": "production"}
    if admin:
        env["AGENTIC_ADMIN_API_KEY"] = admin
    if token:
        env["AGENTIC_METRICS_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-m", "agentic_backend", "serve", "--port", "0"],
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert missing in result.stderr + result.stdout
    assert ADMIN_KEY not in result.stderr + result.stdout
    assert "agb_" not in result.stderr + result.stdout


def run_cli(*args: str, data_dir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a thread of its own (it runs its own event loop, as it does in a shell): a
    process of its own would spend three seconds importing what this one has (seven calls a test)."""
    env = {"AGENTIC_DATA_DIR": str(data_dir), "AGENTIC_DATABASE_URL": database_url}
    with ThreadPoolExecutor(1) as thread:
        result = thread.submit(CliRunner().invoke, cli_app, list(args), env=env).result(timeout=60)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


async def test_cli_key_lifecycle(
    db_app: FastAPI, client_for: ClientFor, database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    created = run_cli(
        "keys",
        "create",
        "--name",
        "cli-made",
        "--role",
        "operator",
        data_dir=tmp_path,
        database_url=database_url,
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("agb_")
    listed = run_cli("keys", "list", data_dir=tmp_path, database_url=database_url)
    assert "cli-made" in listed.stdout
    assert "operator" in listed.stdout
    assert secret not in listed.stdout + listed.stderr
    duplicate = run_cli("keys", "create", "--name", "cli-made", data_dir=tmp_path, database_url=database_url)
    assert duplicate.returncode == 1
    assert "exists already" in duplicate.stderr
    unknown_role = run_cli(
        "keys", "create", "--name", "x", "--role", "root", data_dir=tmp_path, database_url=database_url
    )
    assert unknown_role.returncode == 1
    assert "unknown role" in unknown_role.stderr

    async with client_for(db_app, key=secret) as client:
        assert (await client.get("/api/v1/monitoring/summary")).status_code == 200
        revoked = run_cli("keys", "revoke", "cli-made", data_dir=tmp_path, database_url=database_url)
        assert revoked.returncode == 0, revoked.stderr
        # The CLI is another process: the service's memory of the key lasts AGENTIC_KEY_CACHE_SECONDS.
        clock.advance(state.of(db_app).settings.key_cache_seconds)
        assert (await client.get("/api/v1/monitoring/summary")).status_code == 401
    missing = run_cli("keys", "revoke", "nobody", data_dir=tmp_path, database_url=database_url)
    assert missing.returncode == 1
    assert "no API key" in missing.stderr
