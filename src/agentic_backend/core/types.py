"""Field types shared by the API's models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator


def _as_utc(value: datetime) -> datetime:
    # SQLite keeps no offset: the service writes every timestamp in UTC, so a naive one read back is UTC.
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
        raise ValueError(_OUT_OF_RANGE) from None


_OUT_OF_RANGE = "must be between 0001-01-02T00:00:00Z and 9999-12-30T23:59:59Z"


def _in_range(value: datetime) -> datetime:
    # A day from either end of what datetime holds, so that arithmetic on it (a window, a day's rollup)
    # cannot overflow either.
    if not datetime(1, 1, 2, tzinfo=UTC) <= value <= datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC):
        raise ValueError(_OUT_OF_RANGE)
    return value


# A timestamp as RFC 3339 requires it (OpenAPI's ``date-time``): always with its offset, always UTC.
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


def json_number(value: object) -> object:
    # A before-validator of a JSON body's numbers: integral floats (3.0) are integers as JSON Schema says, but
    # lax pydantic also takes true as 1 and "3" as 3: not numbers in JSON, nor in the OpenAPI document.
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


def _not_a_number(value: object) -> object:
    # A timestamp query parameter: lax pydantic reads "0.5" as seconds since 1970; RFC 3339 only here.
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

# A date-time query parameter: RFC 3339 text, not a number of seconds.
DateTimeParam = Annotated[UtcDateTime, AfterValidator(_in_range), BeforeValidator(_not_a_number)]
