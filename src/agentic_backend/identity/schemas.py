"""Pydantic models of the identity API."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentic_backend.core.types import UtcDateTime, json_number
from agentic_backend.identity.permissions import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the authenticated key (never its secret)."""

    key_id: int
    name: str
    role: str
    monthly_budget_dollars: float | None = None  # None: the settings' default
    rpm_limit: int | None = None
    tpm_limit: int | None = None


# Characters a key name may not hold: controls, and the invisible ones that make a name look like another
# in a list (bidirectional overrides and isolates, zero-width spaces and joiners, marks, separators, the
# byte-order mark). One class both sides read: Python's re and JSON Schema's ECMA regex agree on it.
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    r"\ufeff\ufff9-\ufffb"
)
_NAME_PATTERN = rf"^[^{_INVISIBLE}]*[^{_INVISIBLE}\x20][^{_INVISIBLE}]*$"
_FORBIDDEN = re.compile(rf"[{_INVISIBLE}]")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The pattern documents what the validator below enforces (with a sentence rather than a regex).
    name: str = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"pattern": _NAME_PATTERN},
        description="A unique name, e.g. the application's: printable characters (no control, "
        "bidirectional-override or zero-width ones), not only spaces.",
    )
    role: Role = Field(description="admin, operator, user or viewer.")
    monthly_budget_dollars: float | None = Field(
        default=None, ge=0, le=1e9, description="Unset: the default."
    )
    rpm_limit: int | None = Field(default=None, ge=1, le=1_000_000, description="Unset: the default.")
    tpm_limit: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Tokens per minute (input and output). Unset: the default.",
    )

    _numbers = field_validator("monthly_budget_dollars", "rpm_limit", "tpm_limit", mode="before")(json_number)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        found = _FORBIDDEN.search(value)
        if found is not None:
            raise ValueError(
                f"the name must hold printable characters only: U+{ord(found.group()):04X} at position "
                f"{found.start()} is a control or invisible character"
            )
        if all(c == " " for c in value):
            raise ValueError("the name must not be blank")
        return value


class ApiKeyLimits(BaseModel):
    """Per-key overrides of the default budget and rate limit; null restores the default."""

    model_config = ConfigDict(extra="forbid")

    monthly_budget_dollars: float | None = Field(default=None, ge=0, le=1e9)
    rpm_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    tpm_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)

    _numbers = field_validator("monthly_budget_dollars", "rpm_limit", "tpm_limit", mode="before")(json_number)


class ApiKeyPublic(BaseModel):
    """A key as listed: never its secret."""

    id: int
    name: str
    role: str
    monthly_budget_dollars: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret. Shown this once: store it now.")
