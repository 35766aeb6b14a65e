"""Tables of the billing feature: the usage ledger and each key's monthly spend."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentic_backend.core.db import Base


class UsageRecord(Base):
    """One agent query: who asked, what it used and cost, how it ended. The source of truth for spend."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    agent_type: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(100))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cost_nanodollars: Mapped[int] = mapped_column(BigInteger)
    cached: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    error_kind: Mapped[str | None] = mapped_column(String(20), default=None)
    duration_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    trace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    end_user: Mapped[str | None] = mapped_column(String(256), default=None, index=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(Integer, server_default="0")


class UsageTag(Base):
    """One metadata tag of a query (also in its row's ``tags``), to filter and group usage by it."""

    __tablename__ = "usage_tags"
    __table_args__ = (Index("ix_usage_tags_key_value", "key", "value"),)

    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))


class KeySpend(Base):
    """A key's spend in one calendar month (UTC), and what queries in flight have reserved."""

    __tablename__ = "key_spend"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    spent_nanodollars: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nanodollars: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetReservation(Base):
    """What one model call in flight has reserved of its key's budget, until it settles or expires (a
    crashed or killed worker's reservations are swept once ``expires_at`` passes)."""

    __tablename__ = "budget_reservations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["key_id", "month"], ["key_spend.key_id", "key_spend.month"], ondelete="CASCADE"
        ),
        Index("ix_budget_reservations_key_month", "key_id", "month"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer)
    month: Mapped[str] = mapped_column(String(7))
    request_id: Mapped[str] = mapped_column(String(32))
    amount_nanodollars: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RateHit(Base):
    """One admitted hit of a moving window (billing/ratelimit.py's database store)."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    at: Mapped[float] = mapped_column(Float)  # Unix time, seconds
    amount: Mapped[int] = mapped_column(BigInteger, default=1)  # 1 per request; tokens in a token window


class UsageRollup(Base):
    """The ledger summed per key, UTC day, agent type, status and model, kept in the same transaction as the
    ledger's rows: totals (``/usage`` without a time range, the summary's spend per key) read these few
    rows instead of scanning the ledger."""

    __tablename__ = "usage_rollups"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    agent_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    queries: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanodollars: Mapped[int] = mapped_column(BigInteger, default=0)
    cached: Mapped[int] = mapped_column(BigInteger, default=0)
