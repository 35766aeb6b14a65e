"""Attribution: the end user a caller names (OpenAI's ``user``) and its metadata tags, per query, and its
cached input and reasoning tokens as providers report them; the
Responses API's stored responses (``previous_response_id``). And api_keys.public_id loses the index 0001
made beside its unique constraint, whose own index serves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.add_column(sa.Column("end_user", sa.String(256), nullable=True))
        table.add_column(sa.Column("tags", sa.JSON(none_as_null=True), nullable=True))
        for column in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            table.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_usage_records_end_user", "usage_records", ["end_user"])
    # One row per tag of a query, to filter and group by a tag without reading JSON in SQL.
    op.create_table(
        "usage_tags",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
    )
    op.create_index("ix_usage_tags_key_value", "usage_tags", ["key", "value"])
    op.drop_index("ix_api_keys_public_id", table_name="api_keys")
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stored_responses_key_id", "stored_responses", ["key_id"])
    op.create_index("ix_stored_responses_expires_at", "stored_responses", ["expires_at"])


def downgrade() -> None:
    op.drop_table("stored_responses")
    op.create_index("ix_api_keys_public_id", "api_keys", ["public_id"])
    op.drop_index("ix_usage_tags_key_value", table_name="usage_tags")
    op.drop_table("usage_tags")
    op.drop_index("ix_usage_records_end_user", table_name="usage_records")
    with op.batch_alter_table("usage_records") as table:
        for column in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            table.drop_column(column)
        table.drop_column("tags")
        table.drop_column("end_user")
