"""The migrations build the schema the models describe, on both databases: a column, index or table added
to a model without its migration (or the other way round) fails here, not in production."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from agentic_backend.core.db import Base, Database, upgrade_async


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrated_schema_is_the_models(database_url: str) -> None:
    await upgrade_async(database_url)
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await database.close()
    assert [str(d) for d in differences] == []
