"""Tables of the identity feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agentic_backend.core.db import Base


class ApiKey(Base):
    """An API key. The secret itself is never stored: ``public_id`` finds the row, ``secret_hash``
    (SHA-256 of the whole key) proves it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # the constraint's index finds it
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # None: the settings' defaults (AGENTIC_DEFAULT_MONTHLY_BUDGET_DOLLARS, AGENTIC_DEFAULT_RPM_LIMIT).
    monthly_budget_dollars: Mapped[float | None] = mapped_column(Float, default=None)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, default=None)
