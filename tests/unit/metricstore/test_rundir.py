"""The multiprocess folder: serve deletes only the run folders it made, never the user's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentic_backend.metricstore.rundir import MARK, claim_run_folder, release_run_folder
from agentic_backend.metricstore.storage import process_identity


def test_a_chosen_folder_keeps_everything_that_is_not_a_run_folder_of_a_dead_serve(tmp_path: Path) -> None:
    (tmp_path / "agentic.db").write_text("data")
    (tmp_path / "agentic-metrics-unmarked").mkdir()
    (tmp_path / "agentic-metrics-unmarked" / "file").write_text("kept")
    # A run folder whose serve was killed: its owner no longer runs.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / "agentic-metrics-stale"
    stale.mkdir()
    (stale / MARK).write_text(f"{dead.stdout.strip()}-1\n")
    (stale / "w-1-1.journal").write_text("")
    # A run folder of a serve that still runs (this process): another serve sharing the folder.
    alive = tmp_path / "agentic-metrics-alive"
    alive.mkdir()
    (alive / MARK).write_text(f"{process_identity(os.getpid())}\n")

    run = claim_run_folder(tmp_path)
    assert run.parent == tmp_path
    assert (run / MARK).is_file()
    assert not stale.exists()
    assert alive.is_dir()
    assert (tmp_path / "agentic.db").read_text() == "data"
    assert (tmp_path / "agentic-metrics-unmarked" / "file").read_text() == "kept"

    release_run_folder(run)
    assert not run.exists()
    release_run_folder(tmp_path)  # not a run folder: nothing happens
    assert (tmp_path / "agentic.db").exists()


def test_a_missing_folder_is_created_and_two_claims_never_share(tmp_path: Path) -> None:
    first = claim_run_folder(tmp_path / "new")
    second = claim_run_folder(tmp_path / "new")
    assert first != second
    assert first.is_dir()
    assert second.is_dir()
