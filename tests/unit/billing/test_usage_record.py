"""The usage record is one record: the row the service writes (``LedgerEntry``), the table's columns and
what the API shows (``UsagePublic``, read from the row) name the same fields, so a field added to one and
not the others fails here rather than as a missing value in a report."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from agentic_backend.billing.ledger import LedgerEntry, UsagePublic
from agentic_backend.billing.models import UsageRecord


def test_entry_table_and_api_name_the_same_fields() -> None:
    entry = {f.name for f in fields(LedgerEntry)}
    columns = {c.name for c in UsageRecord.__table__.columns} - {"id"}
    public = {
        (f.validation_alias if isinstance(f.validation_alias, str) else name)
        for name, f in UsagePublic.model_fields.items()
    } - {"id"}
    assert entry == columns == public


def test_the_api_reads_the_row_and_gives_dollars() -> None:
    row = UsageRecord(
        id=7,
        request_id="a" * 32,
        key_id=3,
        agent_type="assistant",
        provider="sim",
        model="gpt-4o-mini",
        input_tokens=120,
        output_tokens=45,
        cost_nanodollars=1_250_000,
        cached=False,
        status="success",
        error_kind=None,
        duration_seconds=0.25,
        created_at=datetime(2026, 12, 3, 6, 0, tzinfo=UTC),
        trace_id=None,
        cache_read_tokens=100,
        cache_write_tokens=0,
        reasoning_tokens=5,
    )
    shown = UsagePublic.model_validate(row).model_dump(mode="json")
    assert shown["cost_dollars"] == 0.00125
    assert "cost_nanodollars" not in shown
    assert shown["id"] == 7
    assert shown["input_tokens"] == 120
    assert shown["cache_read_tokens"] == 100
    assert shown["created_at"].startswith("2026-12-03T06:00")
