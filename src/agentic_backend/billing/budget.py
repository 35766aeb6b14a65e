"""Monthly dollar budgets per key, enforced in the database so that they hold across workers and replicas.

Before a query runs it reserves an estimate of its cost in one atomic UPDATE, which succeeds only if the
month's spend plus every reservation in flight plus this estimate fits the budget, or if nothing else is in
flight and some budget is left. So parallel queries never start past the budget, and the most a key can
overspend is one query's cost beyond its estimate. When the query ends, the ledger's write replaces its
reservation by what it really cost (billing/ledger.py, in the same transaction as the query's row).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agentic_backend.billing.models import KeySpend
from agentic_backend.core.db import Database


def month_of(moment: datetime) -> str:
    return f"{moment:%Y-%m}"


class Budgets:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def reserve(self, key_id: int, month: str, budget_nanos: int, estimate_nanos: int) -> bool:
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        async with self._db.session() as session:
            await session.execute(
                insert(KeySpend)
                .values(key_id=key_id, month=month, spent_nanodollars=0, reserved_nanodollars=0)
                .on_conflict_do_nothing()
            )
            spend = KeySpend.spent_nanodollars
            reserved = KeySpend.reserved_nanodollars
            result = await session.execute(
                update(KeySpend)
                .where(
                    KeySpend.key_id == key_id,
                    KeySpend.month == month,
                    or_(
                        spend + reserved + estimate_nanos <= budget_nanos,
                        and_(reserved == 0, spend < budget_nanos),
                    ),
                )
                .values(reserved_nanodollars=reserved + estimate_nanos)
            )
            await session.commit()
        return bool(getattr(result, "rowcount", 0))

    async def spent(self, key_id: int, month: str) -> int:
        async with self._db.session() as session:
            value = await session.scalar(
                select(KeySpend.spent_nanodollars).where(KeySpend.key_id == key_id, KeySpend.month == month)
            )
        return int(value or 0)
