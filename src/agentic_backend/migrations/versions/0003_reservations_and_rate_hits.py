"""Budget reservations (one row per model call in flight, with its request id and expiry) and the hits of
the shared rate-limit windows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("amount_nanodollars", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id", "month"], ["key_spend.key_id", "key_spend.month"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_budget_reservations_key_month", "budget_reservations", ["key_id", "month"])
    op.create_index("ix_budget_reservations_expires_at", "budget_reservations", ["expires_at"])
    op.create_table(
        "rate_hits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_rate_hits_name_at", "rate_hits", ["name", "at"])


def downgrade() -> None:
    op.drop_table("rate_hits")
    op.drop_table("budget_reservations")
