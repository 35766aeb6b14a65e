"""Monthly dollar budgets per key, enforced in the database so that they hold across workers and replicas.

Before each model call the query reserves an upper bound of that call's cost (``call_bound``: every input
byte a token, the agent's ``max_output_tokens`` of output, at the model's prices) in one transaction whose
conditional UPDATE succeeds only if the month's spend plus every reservation in flight plus this one fits
the budget, or if nothing else is in flight and some budget is left. So calls in flight never cost more
than the budget left, and the most a key can overspend is the one call admitted alone at the edge: at most
one model call's cost, under any concurrency and whatever ``AGENTIC_QUERY_COST_ESTIMATE_DOLLARS`` is.

When the call returns (or fails, or is cancelled), ``settle`` replaces its reservation by what it really
cost. Each reservation is a row carrying its request id and an expiry: if the worker dies mid-call, the
next reservation for that key, or the periodic ``sweep``, releases it once it has expired. Statements lock
a key's reservation rows before its spend row, everywhere, so two workers or replicas never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agentic_backend.billing.models import BudgetReservation, KeySpend
from agentic_backend.billing.pricing import Pricer
from agentic_backend.core.db import Database
from agentic_backend.llm.base import Message, ToolSpec

# Tokens a provider adds per message (role markers, separators) beyond its text; generous for every
# tokenizer in use (OpenAI's chat format adds 3 to 4).
_TOKENS_PER_MESSAGE = 16


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"  # strftime's formatting costs 10x more, per query


def input_token_bound(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> int:
    """More input tokens than any tokenizer makes of these messages: byte-level BPE tokenizers never make
    more tokens than UTF-8 bytes, plus a per-message allowance."""
    size = 0
    for message in messages:
        size += len(message.content.encode()) + _TOKENS_PER_MESSAGE
        for call in message.tool_calls or ():
            size += len(call.name) + len(repr(call.arguments).encode()) + _TOKENS_PER_MESSAGE
    for tool in tools:
        size += len(tool.name) + len(tool.description.encode()) + len(repr(tool.parameters).encode())
    return size


def call_bound(pricer: Pricer, model: str, input_tokens: int, max_output_tokens: int) -> int:
    """The most a call can cost, in nanodollars (0 for a model without a price: it costs nothing here)."""
    return pricer.bound(model, input_tokens, max_output_tokens).nanodollars


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
    key_id: int
    month: str
    amount: int


class Budgets:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def reserve(
        self,
        key_id: int,
        month: str,
        budget_nanos: int,
        amount: int,
        *,
        request_id: str,
        now: datetime,
        lifetime: timedelta,
    ) -> Reservation | None:
        """Reserve ``amount`` for one call, or None if the budget does not allow it."""
        insert_spend = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        async with self._db.session() as session:
            await session.execute(
                insert_spend(KeySpend)
                .values(key_id=key_id, month=month, spent_nanodollars=0, reserved_nanodollars=0)
                .on_conflict_do_nothing()
            )
            await self._release_expired(session, now, key_id=key_id, month=month)
            spend = KeySpend.spent_nanodollars
            reserved = KeySpend.reserved_nanodollars
            result = await session.execute(
                update(KeySpend)
                .where(
                    KeySpend.key_id == key_id,
                    KeySpend.month == month,
                    or_(
                        spend + reserved + amount <= budget_nanos,
                        and_(reserved == 0, spend < budget_nanos),
                    ),
                )
                .values(reserved_nanodollars=reserved + amount)
            )
            if not getattr(result, "rowcount", 0):
                await session.commit()  # the sweep above is kept
                return None
            reservation_id = await session.scalar(
                insert(BudgetReservation)
                .values(
                    key_id=key_id,
                    month=month,
                    request_id=request_id,
                    amount_nanodollars=amount,
                    expires_at=now + lifetime,
                )
                .returning(BudgetReservation.id)
            )
            await session.commit()
        assert reservation_id is not None
        return Reservation(int(reservation_id), key_id, month, amount)

    async def settle(self, reservation: Reservation, cost: int) -> None:
        """Replace ``reservation`` by what the call cost (0 if it failed before the provider charged)."""
        async with self._db.session() as session:
            released = await session.scalar(
                delete(BudgetReservation)
                .where(BudgetReservation.id == reservation.id)
                .returning(BudgetReservation.amount_nanodollars)
            )
            await session.execute(
                update(KeySpend)
                .where(KeySpend.key_id == reservation.key_id, KeySpend.month == reservation.month)
                .values(
                    spent_nanodollars=KeySpend.spent_nanodollars + cost,
                    # Already swept if it outlived its expiry: then only the cost is added.
                    reserved_nanodollars=KeySpend.reserved_nanodollars - int(released or 0),
                )
            )
            await session.commit()

    async def sweep(self, now: datetime) -> int:
        """Release every expired reservation (of calls whose worker died); how many were released."""
        async with self._db.session() as session:
            count = await self._release_expired(session, now)
            await session.commit()
        return count

    @staticmethod
    async def _release_expired(
        session: AsyncSession, now: datetime, *, key_id: int | None = None, month: str | None = None
    ) -> int:
        conditions = [BudgetReservation.expires_at < now]
        if key_id is not None:
            conditions += [BudgetReservation.key_id == key_id, BudgetReservation.month == month]
        # DELETE ... RETURNING: of two sweeps racing, each gets only the rows it deleted itself.
        released = (
            await session.execute(
                delete(BudgetReservation)
                .where(*conditions)
                .returning(
                    BudgetReservation.key_id, BudgetReservation.month, BudgetReservation.amount_nanodollars
                )
            )
        ).all()
        totals: dict[tuple[int, str], int] = {}
        for row_key, row_month, amount in released:
            totals[(row_key, row_month)] = totals.get((row_key, row_month), 0) + int(amount)
        for (row_key, row_month), amount in sorted(totals.items()):  # one lock order
            await session.execute(
                update(KeySpend)
                .where(KeySpend.key_id == row_key, KeySpend.month == row_month)
                .values(reserved_nanodollars=KeySpend.reserved_nanodollars - amount)
            )
        return len(released)

    async def spent(self, key_id: int, month: str) -> int:
        async with self._db.session() as session:
            value = await session.scalar(
                select(KeySpend.spent_nanodollars).where(KeySpend.key_id == key_id, KeySpend.month == month)
            )
        return int(value or 0)

    async def reserved(self, key_id: int, month: str) -> tuple[int, int]:
        """The key's reserved amount and its number of reservations rows (both 0 once nothing runs)."""
        async with self._db.session() as session:
            amount = await session.scalar(
                select(KeySpend.reserved_nanodollars).where(
                    KeySpend.key_id == key_id, KeySpend.month == month
                )
            )
            rows = await session.scalar(
                select(func.count())
                .select_from(BudgetReservation)
                .where(BudgetReservation.key_id == key_id, BudgetReservation.month == month)
            )
        return int(amount or 0), int(rows or 0)
