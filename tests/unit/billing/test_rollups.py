"""Usage totals read from the rollups equal the ledger's rows, on both databases; the migration fills the
rollups from a ledger written before them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, text

from agentic_backend.billing.ledger import _TOTALS, Ledger, LedgerEntry
from agentic_backend.billing.models import UsageRecord
from agentic_backend.core.db import Database, upgrade_async
from agentic_backend.identity.service import KeyService
from tests.conftest import FakeClock


def entry(key_id: int, n: int, moment: datetime) -> LedgerEntry:
    return LedgerEntry(
        request_id=f"{n:032x}",
        key_id=key_id,
        agent_type=("assistant", "researcher")[n % 2],
        provider="sim",
        model="gpt-4o-mini",
        input_tokens=10 + n,
        output_tokens=20 + 2 * n,
        cost_nanodollars=1_000 * n,
        cached=n % 3 == 0,
        status=("success", "success", "error", "rejected")[n % 4],
        error_kind=None,
        duration_seconds=0.01,
        created_at=moment,
    )


async def scanned(database: Database, *conditions: object) -> tuple[int, ...]:
    async with database.session() as session:
        return tuple(int(v) for v in (await session.execute(select(*_TOTALS).where(*conditions))).one())


async def test_rollup_totals_equal_the_ledger(database: Database, clock: FakeClock) -> None:
    keys = KeyService(database, clock)
    first, second = (await keys.create("a", "user")).id, (await keys.create("b", "user")).id
    ledger = Ledger(database)
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    for n in range(60):  # over three UTC days, two keys, two agent types, three statuses
        await ledger.record(entry((first, second)[n % 2], n, start + timedelta(hours=n)))
    for key_id in (None, first, second):
        for agent_type in (None, "assistant"):
            for status in (None, "success", "error"):
                report = await ledger.report(
                    key_id=key_id, agent_type=agent_type, status=status, since=None, until=None, limit=0
                )
                conditions = [
                    c
                    for c in (
                        UsageRecord.key_id == key_id if key_id else None,
                        UsageRecord.agent_type == agent_type if agent_type else None,
                        UsageRecord.status == status if status else None,
                    )
                    if c is not None
                ]
                queries, input_tokens, output_tokens, nanos, cached = await scanned(database, *conditions)
                totals = report.totals
                assert (totals.queries, totals.input_tokens, totals.output_tokens, totals.cached) == (
                    queries,
                    input_tokens,
                    output_tokens,
                    cached,
                )
                assert round(totals.cost_dollars * 1e9) == nanos
    by_key = {row.key_id: row for row in await ledger.totals_by_key()}
    assert by_key[first].queries + by_key[second].queries == 60
    assert (
        round(by_key[first].cost_dollars * 1e9) == (await scanned(database, UsageRecord.key_id == first))[3]
    )


_LATER = ("trace_id", "end_user", "tags", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


async def test_the_migration_fills_the_rollups_from_an_older_ledger(
    database_url: str, clock: FakeClock
) -> None:
    await upgrade_async(database_url, "0003")
    database = Database(database_url)
    try:
        # Written as that schema stood (the models are newer): plain inserts of its columns.
        async with database.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO api_keys (name, role, public_id, secret_hash, created_at) "
                    "VALUES ('old', 'user', 'p0123456789abcde', 'h', :at)"
                ),
                {"at": clock.now()},
            )
            key_id = int((await connection.execute(text("SELECT id FROM api_keys"))).scalar_one())
            start = datetime(2026, 11, 1, tzinfo=UTC)
            rows = [entry(key_id, n, start + timedelta(hours=7 * n)) for n in range(12)]
            await connection.execute(
                insert(UsageRecord.__table__),
                # trace_id came in 0006, the rest of _LATER in 0007
                [{f: getattr(r, f) for f in r.__slots__ if f not in _LATER} for r in rows],
            )
        await upgrade_async(database_url)
        report = await Ledger(database).report(
            key_id=key_id, agent_type=None, status=None, since=None, until=None, limit=0
        )
        assert report.totals.queries == 12
        assert round(report.totals.cost_dollars * 1e9) == sum(r.cost_nanodollars for r in rows)
        assert report.totals.input_tokens == sum(r.input_tokens for r in rows)
        assert report.totals.cached == sum(r.cached for r in rows)
        # 0006 rebuilt the rollups with the model in their key, from the ledger.
        async with database.session() as session:
            models = (
                await session.execute(text("SELECT model, sum(queries) FROM usage_rollups GROUP BY model"))
            ).all()
        assert {m: int(n) for m, n in models} == {r.model: 12 for r in rows[:1]}
    finally:
        await database.close()
