"""Pydantic models of the identity API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentic_backend.identity.permissions import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the authenticated key (never its secret)."""

    key_id: int
    name: str
    role: str
    monthly_budget_dollars: float | None = None  # None: the settings' default
    rpm_limit: int | None = None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="A unique name, e.g. the application's.")
    role: Role = Field(description="admin, operator, user or viewer.")
    monthly_budget_dollars: float | None = Field(
        default=None, ge=0, le=1e9, description="Unset: the default."
    )
    rpm_limit: int | None = Field(default=None, ge=1, le=1_000_000, description="Unset: the default.")

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the name must not be blank")
        if not value.isprintable():
            raise ValueError("the name must not contain control characters")
        return value


class ApiKeyLimits(BaseModel):
    """Per-key overrides of the default budget and rate limit; null restores the default."""

    model_config = ConfigDict(extra="forbid")

    monthly_budget_dollars: float | None = Field(default=None, ge=0, le=1e9)
    rpm_limit: int | None = Field(default=None, ge=1, le=1_000_000)


class ApiKeyPublic(BaseModel):
    """A key as listed: never its secret."""

    id: int
    name: str
    role: str
    monthly_budget_dollars: float | None = None
    rpm_limit: int | None = None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret. Shown this once: store it now.")
