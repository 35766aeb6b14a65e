"""Every example of the documentation (docs/*.md and the README) runs.

- ```bash blocks run against a live service, as written: ``localhost:8000`` is the service's address,
  ``$KEY`` its admin key (the ``KEY=agb_...`` line is the reader's to fill), the CLI's commands use its
  database. Each ``curl`` fails the block on an HTTP error (``--fail-with-body``), so a missing header or a
  wrong path is caught, not printed.
- ```python blocks run with ``KEY`` defined and the same address.
- ```shell blocks start or stop servers (``make serve``, ``docker compose``, ``stack up``): each command is
  checked to exist as written (a Makefile target, an ``agentic-backend`` subcommand with its options, a
  Compose service); other tests run them.
- The site builds with ``mkdocs build --strict`` in ``make test``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from tests.integration.harness import Service

pytestmark = pytest.mark.integration

PAGES = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(FENCE.finditer(page.read_text())):
            if match.group(1) == language:
                found.append((f"{page.relative_to(ROOT)}#{number}", match.group(2)))
    return found


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split("  #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(tmp_path_factory.mktemp("docs"))
    yield running
    running.stop()


def _env(service: Service) -> dict[str, str]:
    return {
        **os.environ,
        "KEY": service.admin_key,
        "AGENTIC_DATA_DIR": str(service.log_path.parent / "data"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }


def _local(text: str, service: Service) -> str:
    return text.replace("http://localhost:8000", service.url).replace("localhost:8000", service.url)


@pytest.mark.parametrize(("where", "block"), blocks("bash"), ids=lambda value: str(value)[:40])
def test_bash_examples_run_against_a_live_service(service: Service, where: str, block: str) -> None:
    lines = [line for line in commands(block) if not line.startswith("KEY=")]
    assert lines, f"{where}: an empty example"
    script = 'set -euo pipefail\ncurl() { command curl --fail-with-body -sS --max-time 30 "$@"; }\n'
    script += "\n".join(
        _local(line, service).replace("uv run agentic-backend", "agentic-backend") for line in lines
    )
    done = subprocess.run(
        ["bash", "-c", script], env=_env(service), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (
        f"{where} failed:\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


@pytest.mark.parametrize(("where", "block"), blocks("python"), ids=lambda value: str(value)[:40])
def test_python_examples_run_against_a_live_service(service: Service, where: str, block: str) -> None:
    source = f"KEY = {service.admin_key!r}\n" + _local(block, service)
    done = subprocess.run(
        [sys.executable, "-c", source],
        env=_env(service),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{source}\n--- stderr\n{done.stderr}"
    assert "None" not in done.stdout, f"{where} printed None:\n{done.stdout}"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def _compose_services() -> set[str]:
    return set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


@pytest.mark.parametrize(("where", "block"), blocks("shell"), ids=lambda value: str(value)[:40])
def test_shell_examples_name_what_exists(where: str, block: str) -> None:
    for line in commands(block):
        for command in re.split(r"\s*&&\s*", line):
            words = shlex.split(command)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before a command
                words.pop(0)
            if words[:2] == ["uv", "run"]:
                words = words[2:]
            if words[0] == "make":
                assert set(words[1:]) <= _make_targets(), f"{where}: {command}: no such make target"
            elif words[0] == "agentic-backend":
                options = [w for w in words[1:] if not w.startswith("$")]
                subcommand = [w for w in options if not w.startswith("-")]
                done = subprocess.run(
                    [sys.executable, "-m", "agentic_backend", *subcommand[:2], "--help"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, f"{where}: {command}: {done.stderr}"
                for option in (w.split("=")[0] for w in options if w.startswith("--")):
                    assert option in done.stdout, f"{where}: {command}: {option} is not an option"
            elif words[:2] == ["docker", "compose"]:
                named = {w for w in words[2:] if not w.startswith("-") and w not in {"up", "stop", "down"}}
                assert named <= _compose_services(), f"{where}: {command}: no such Compose service"
            elif words[:2] == ["docker", "volume"]:
                assert (
                    words[-1].removeprefix("agentic-backend_")
                    in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
                ), f"{where}: {command}: no such volume"
            elif words[:2] == ["helm", "install"]:  # rendered as it would install
                helm = ROOT / ".tools" / "bin" / "helm"
                assert helm.exists(), "scripts/bootstrap.sh all fetches helm into .tools/bin"
                done = subprocess.run(
                    [str(helm), "template", *words[2:]], cwd=ROOT, capture_output=True, text=True, check=False
                )
                assert done.returncode == 0, f"{where}: {command}: {done.stderr}"
            elif words[0] in {"rm"}:
                continue
            else:
                raise AssertionError(
                    f"{where}: {command}: a shell example this test does not know how to check"
                )
