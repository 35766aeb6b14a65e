"""The console: the embedded metric history, browser sessions, and the usage rollups by model too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _rollups(by_model: bool) -> None:
    """(Re)build usage_rollups from the ledger, with or without the model in its key."""
    op.drop_table("usage_rollups")
    model = [sa.Column("model", sa.String(100), primary_key=True)] if by_model else []
    op.create_table(
        "usage_rollups",
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("agent_type", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        *model,
        sa.Column("queries", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_nanodollars", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cached", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # The day of each row in UTC: PostgreSQL's timestamptz converted; SQLite stores UTC text.
    postgresql = op.get_bind().dialect.name == "postgresql"
    day = (
        "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if postgresql else "substr(created_at, 1, 10)"
    )
    keys = "key_id, {day}, agent_type, status" + (", model" if by_model else "")
    op.execute(
        f"INSERT INTO usage_rollups ({keys.format(day='day')}, queries, input_tokens, output_tokens, "  # noqa: S608
        f"cost_nanodollars, cached) SELECT {keys.format(day=day)}, count(*), sum(input_tokens), "
        "sum(output_tokens), sum(cost_nanodollars), sum(CASE WHEN cached THEN 1 ELSE 0 END) "
        f"FROM usage_records GROUP BY {keys.format(day=day)}"
    )


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("trace_id", sa.String(32), nullable=True))
    _rollups(by_model=True)  # the console's spend by model, without scanning the ledger
    op.create_table(
        "metric_history",
        sa.Column("at", sa.Integer(), primary_key=True),
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_key_id", "console_sessions", ["key_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("metric_history")
    _rollups(by_model=False)
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("trace_id")
