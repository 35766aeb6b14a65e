"""Usage rollups: the ledger summed per key, UTC day, agent type and status, filled from the rows so far.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("agent_type", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("queries", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_nanodollars", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cached", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # The day of each row in UTC: PostgreSQL's timestamptz converted; SQLite stores UTC text.
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(_BACKFILL_POSTGRESQL if postgresql else _BACKFILL_SQLITE)


_BACKFILL = """
INSERT INTO usage_rollups (key_id, day, agent_type, status, queries, input_tokens, output_tokens,
                           cost_nanodollars, cached)
SELECT key_id, {day}, agent_type, status, count(*), sum(input_tokens), sum(output_tokens),
       sum(cost_nanodollars), sum(CASE WHEN cached THEN 1 ELSE 0 END)
FROM usage_records GROUP BY key_id, {day}, agent_type, status
"""
_BACKFILL_POSTGRESQL = _BACKFILL.format(day="to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
_BACKFILL_SQLITE = _BACKFILL.format(day="substr(created_at, 1, 10)")


def downgrade() -> None:
    op.drop_table("usage_rollups")
