"""The ``agentic-backend`` command."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

app = typer.Typer(
    help="Agentic Backend: LLM agents with production monitoring built in.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """Agentic Backend: LLM agents with production monitoring built in."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; metrics are summed over all.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Run the API server (settings come from AGENTIC_* environment variables)."""
    import os

    folder: Path | None = None
    if workers > 1:
        # Each worker publishes its metrics here; one scrape of any worker reports the sum over all.
        configured = os.environ.get("AGENTIC_METRICS_MULTIPROCESS_DIR")
        folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="agentic-metrics-"))
        shutil.rmtree(folder, ignore_errors=True)  # values of an earlier run must not be added to this one's
        folder.mkdir(parents=True)
        os.environ["AGENTIC_METRICS_MULTIPROCESS_DIR"] = str(folder)
    try:
        uvicorn.run(
            "agentic_backend.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            log_level=log_level,
        )
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
