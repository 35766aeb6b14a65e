"""Tables of the console: the embedded metric history, and browser sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from agentic_backend.core.db import Base


class MetricHistory(Base):
    """One sample of the sums the console's panels read, for one service run (``instance``): a zlib-
    compressed JSON object, leaf key -> [[label values..., value], ...] (console/history.py)."""

    __tablename__ = "metric_history"

    at: Mapped[int] = mapped_column(Integer, primary_key=True)  # Unix seconds, a multiple of the interval
    instance: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored. It ends at sign-out,
    at ``expires_at``, and when its key is revoked (every request checks the key)."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
