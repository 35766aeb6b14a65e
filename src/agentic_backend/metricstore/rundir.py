"""The folder ``serve --workers N`` shares its workers' metrics through, and the rule that it deletes only
what it created.

Each run gets a folder of its own, made by this module and marked with a file naming the ``serve``
process that owns it (its pid and start time). With ``AGENTIC_METRICS_MULTIPROCESS_DIR`` set, the run
folder is made *inside* the folder the user chose, which is never emptied or removed: pointing the
variable at the data folder, or at ``/``, deletes nothing of the user's. Values of an earlier run are
never added to this one's because each run starts in a new folder; run folders left by a ``serve`` that
was killed (its owner is gone) are removed at the next start, and only those, since only they carry the
mark.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from agentic_backend.metricstore.storage import process_identity

MARK = ".agentic-backend-run"
_PREFIX = "agentic-metrics-"


def _owner_alive(run: Path) -> bool:
    try:
        owner = (run / MARK).read_text().strip()
    except FileNotFoundError:
        return True  # not ours, or being created: leave it alone
    pid, _, _ = owner.partition("-")
    return pid.isdigit() and process_identity(int(pid)) == owner


def claim_run_folder(parent: Path | None) -> Path:
    """A new, marked run folder: under ``parent`` if given (created if missing, never emptied), else under
    the system's temporary folder. Stale run folders of dead owners in ``parent`` are removed first."""
    base = parent if parent is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    for candidate in base.glob(f"{_PREFIX}*"):
        if candidate.is_dir() and (candidate / MARK).is_file() and not _owner_alive(candidate):
            shutil.rmtree(candidate, ignore_errors=True)
    run = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
    identity = process_identity(os.getpid())
    assert identity is not None  # this process is running
    (run / MARK).write_text(identity + "\n")
    return run


def release_run_folder(run: Path) -> None:
    """Remove a run folder at exit, if it is one this module made (it carries the mark)."""
    if (run / MARK).is_file() and run.name.startswith(_PREFIX):
        shutil.rmtree(run, ignore_errors=True)
