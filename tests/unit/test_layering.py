"""The code's layers, held: the metric store is a library that imports nothing of the application, and
``core`` knows no feature. Read from the source (every import, at the top or inside a function), so that a
lazy import cannot slip past."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "agentic_backend"
FEATURES = ("agents", "billing", "cache", "console", "identity", "llm", "monitoring", "sessions")


def imported(folder: Path) -> dict[str, set[str]]:
    """Every module each file of ``folder`` imports, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_the_metric_store_imports_nothing_of_the_application() -> None:
    wrong = {
        path: sorted(
            n
            for n in names
            if n.startswith("agentic_backend") and not n.startswith("agentic_backend.metricstore")
        )
        for path, names in imported(PACKAGE / "metricstore").items()
    }
    assert not {path: names for path, names in wrong.items() if names}


def test_core_imports_no_feature() -> None:
    wrong = {
        path: sorted(n for n in names if n.split(".")[:2] in [["agentic_backend", f] for f in FEATURES])
        for path, names in imported(PACKAGE / "core").items()
    }
    assert not {path: names for path, names in wrong.items() if names}


@pytest.mark.parametrize("folder", ["metricstore", "core"])
def test_the_check_sees_imports(folder: str) -> None:
    assert sum(len(names) for names in imported(PACKAGE / folder).values()) > 10


def test_the_app_imports_no_provider_sdk_it_is_not_configured_for() -> None:
    """The anthropic SDK takes two seconds to import, and a worker that takes longer than uvicorn's health
    check to start is killed and started again (four workers on two busy cores never came up): the
    app imports a provider's SDK only when the provider is configured (llm/factory.py)."""
    code = "import sys, agentic_backend.app; print(sorted({'anthropic', 'litellm'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
