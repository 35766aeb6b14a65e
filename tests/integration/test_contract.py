"""The API keeps the contract its OpenAPI document states: schemathesis runs every check, in every phase (examples, coverage, fuzzing, and stateful sequences through the document's links
between keys, sessions and queries), against the live service on SQLite and on PostgreSQL, and finds
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Service

pytestmark = pytest.mark.integration


def schemathesis(url: str, key: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            os.environ.get("AGENTIC_CONTRACT_EXAMPLES", "25"),
            "--seed",
            "20261201",  # deterministic in CI: a red run is a real finding
            "--header",
            f"Authorization: Bearer {key}",
            "--no-color",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


def test_the_live_service_keeps_its_openapi_contract(tmp_path: Path, database_url: str) -> None:
    env = {
        "AGENTIC_DATABASE_URL": database_url,
        # schemathesis sends invalid keys on purpose, hundreds of times from one address: with the default
        # brute-force limit it would meet 429s, which the guard's own tests cover.
        "AGENTIC_AUTH_FAILURE_LIMIT": "1000000",
    }
    service = Service(tmp_path, env=env)
    try:
        schema = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
        assert "HTTPValidationError" not in str(schema)
        record = schema["components"]["schemas"]["CounterRecord"]["properties"]
        assert "not" in record["name"]
        assert record["labels"]["maxProperties"] == 10
        runs = [schemathesis(service.url, service.admin_key, tmp_path)]
        for result in runs:
            print(result.stdout[-3000:])
            assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
            # It really tested: the admin key still works (the API refuses to revoke the key a request
            # uses), so no operation saw only 401s.
            assert "returned only 401/403" not in result.stdout, result.stdout[-5000:]
        assert "Traceback" not in service.log()
    finally:
        service.stop()
