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


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="A unique name, e.g. the application's.")
    role: Role = Field(description="admin, operator, user or viewer.")

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the name must not be blank")
        if not value.isprintable():
            raise ValueError("the name must not contain control characters")
        return value


class ApiKeyPublic(BaseModel):
    """A key as listed: never its secret."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret. Shown this once: store it now.")
