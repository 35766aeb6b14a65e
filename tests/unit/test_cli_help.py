"""Every command's ``--help`` reads at 80 columns: no option name or line cut (rich's boxed help cut
``--no-proxy-headers`` to ``--no-proxy-head…``), through click itself."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agentic_backend.cli import app

COMMAND = typer.main.get_command(app)


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand (typer carries its own click: a group is what has commands)."""
    found = [prefix]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found += _paths(sub, (*prefix, name))
    return found


PATHS = _paths(COMMAND)


def test_every_command_is_listed() -> None:
    assert {("serve",), ("loadgen",), ("keys", "create"), ("stack", "up"), ("db", "upgrade")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "agentic-backend" for p in PATHS])
def test_help_fits_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines, "no help"
    assert max(len(line) for line in lines) <= 80, result.output
    assert "…" not in result.output
    command: Any = COMMAND
    for name in path:
        command = command.commands[name]
    for param in command.params:
        for option in [*param.opts, *param.secondary_opts]:
            if option.startswith("--"):
                assert option in result.output, f"{option} missing or cut in {' '.join(path)} --help"
