"""`agentic-backend stack up` and `stack down` as a user runs them: URLs printed, processes running and
answering, then stopped; clear refusals for a second `up`, a taken port and a `down` with nothing up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import MONITORING
from tests.integration.harness import LOOPBACK, free_port, require_binary

pytestmark = pytest.mark.integration


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentic_backend", "stack", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_stack_up_then_down(tmp_path: Path) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    prometheus_port, alertmanager_port = free_port(), free_port()
    ports = ["--prometheus-port", str(prometheus_port), "--alertmanager-port", str(alertmanager_port)]
    up = cli("up", "--config-dir", str(MONITORING), "--api", f"{LOOPBACK}:1", *ports, cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"http://{LOOPBACK}:{prometheus_port}" in up.stdout
    assert f"http://{LOOPBACK}:{alertmanager_port}" in up.stdout
    state = json.loads((tmp_path / ".stack" / "stack.json").read_text())
    pids = [component["pid"] for component in state["components"]]
    try:
        assert httpx.get(f"http://{LOOPBACK}:{prometheus_port}/-/ready").status_code == 200
        assert httpx.get(f"http://{LOOPBACK}:{alertmanager_port}/-/ready").status_code == 200
        config = (tmp_path / ".stack" / "monitoring" / "prometheus.yml").read_text()
        assert f"{LOOPBACK}:1" in config
        assert f"{LOOPBACK}:{alertmanager_port}" in config
        assert "api:8000" not in config

        again = cli("up", "--config-dir", str(MONITORING), *ports, cwd=tmp_path)
        assert again.returncode != 0
        assert "already runs" in again.stderr
    finally:
        down = cli("down", cwd=tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "prometheus" in down.stdout
    assert "alertmanager" in down.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / ".stack" / "stack.json").exists()


def test_refusals_say_why(tmp_path: Path) -> None:
    require_binary("prometheus")
    nothing = cli("down", cwd=tmp_path)
    assert nothing.returncode != 0
    assert "no stack is running" in nothing.stderr
    missing = cli("up", "--config-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode != 0
    assert "no prometheus.yml" in missing.stderr
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli("up", "--config-dir", str(MONITORING), "--prometheus-port", str(port), cwd=tmp_path)
    assert busy.returncode != 0
    assert f"port {port} is taken" in busy.stderr
