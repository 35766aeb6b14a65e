from agentic_backend.cli import app

app()
