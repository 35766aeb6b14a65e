"""Tokens per minute: a per-key limit, and the amount of each hit of a rate window.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tpm_limit", sa.Integer(), nullable=True))
    with op.batch_alter_table("rate_hits") as batch:
        batch.add_column(sa.Column("amount", sa.BigInteger(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("rate_hits") as batch:
        batch.drop_column("amount")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tpm_limit")
