"""Alembic environment: runs migrations over the async engine of the configured URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from agentic_backend.billing import models as _billing_models  # noqa: F401  (registers tables)
from agentic_backend.console import models as _console_models  # noqa: F401
from agentic_backend.core.db import Base, sqlite_page_size
from agentic_backend.identity import models as _identity_models  # noqa: F401
from agentic_backend.sessions import models as _session_models  # noqa: F401

target_metadata = Base.metadata
# Any fixed number: replicas upgrading at once against PostgreSQL wait for each other on it.
_ADVISORY_LOCK = 7_262_019


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    if engine.dialect.name == "sqlite":  # the migrations create the file: its page size is set here
        event.listen(engine.sync_engine, "connect", sqlite_page_size)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_run_async())
