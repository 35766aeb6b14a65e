"""``/api/v1/usage``: the ledger. A key sees its own usage; ``usage:admin`` sees any key's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from agentic_backend import state
from agentic_backend.billing.ledger import UsageGroups, UsageReport, tag_filter
from agentic_backend.core.security import RequirePermission
from agentic_backend.core.types import DateTimeParam
from agentic_backend.identity.errors import PermissionDenied
from agentic_backend.identity.permissions import Permission, allows
from agentic_backend.identity.router import KEY_ID_MAX
from agentic_backend.identity.schemas import Principal

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])
EndUserParam = Annotated[str | None, Query(max_length=256, description="Only this end user's queries.")]
TagParam = Annotated[
    str | None, Query(pattern=r"^[^:]{1,64}:.{0,512}$", description="Only queries with this tag: key:value.")
]


@router.get("")
async def usage(
    principal: Annotated[Principal, Depends(RequirePermission(Permission.USAGE_READ))],
    request: Request,
    key_id: Annotated[
        int | None, Query(ge=1, le=KEY_ID_MAX, description="Another key's usage (needs usage:admin).")
    ] = None,
    agent_type: str | None = None,
    status: Annotated[str | None, Query(pattern="^(success|error|rejected)$")] = None,
    since: DateTimeParam | None = None,
    until: DateTimeParam | None = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only records older than this id (the next page).")
    ] = None,
    end_user: EndUserParam = None,
    tag: TagParam = None,
) -> UsageReport:
    """Totals and the most recent records of the caller's key (or, for admins, any key or all keys),
    optionally of one end user or one tag."""
    key_id = _scope(principal, key_id)
    return await state.of(request.app).ledger.report(
        key_id=key_id,
        agent_type=agent_type,
        status=status,
        since=since,
        until=until,
        limit=limit,
        before_id=before_id,
        end_user=end_user,
        tag=tag_filter(tag),
    )


@router.get("/groups")
async def usage_groups(
    principal: Annotated[Principal, Depends(RequirePermission(Permission.USAGE_READ))],
    request: Request,
    by: Annotated[
        str,
        Query(
            pattern=r"^(end_user|tag:[^:]{1,64})$",
            description="end_user, or tag:<key> for the values of one metadata tag.",
        ),
    ],
    key_id: Annotated[
        int | None, Query(ge=1, le=KEY_ID_MAX, description="Another key's usage (needs usage:admin).")
    ] = None,
    since: DateTimeParam | None = None,
    until: DateTimeParam | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UsageGroups:
    """The caller's key's (or, for admins, any key's or all keys') totals per end user or per value of a
    tag, the costliest first: what a team bills its own customers from."""
    key_id = _scope(principal, key_id)
    return await state.of(request.app).ledger.groups(by, key_id=key_id, since=since, until=until, limit=limit)


def _scope(principal: Principal, key_id: int | None) -> int | None:
    """The key whose usage the caller may read: its own unless it has usage:admin (then any, or all)."""
    admin = allows(principal.role, Permission.USAGE_ADMIN)
    if key_id is not None and key_id != principal.key_id and not admin:
        raise PermissionDenied(
            f"Reading another key's usage needs the permission '{Permission.USAGE_ADMIN}'."
        )
    return principal.key_id if key_id is None and not admin else key_id
