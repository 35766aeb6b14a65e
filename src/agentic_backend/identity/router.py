"""``/api/v1/keys``: API key administration (``keys:admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from agentic_backend import state
from agentic_backend.identity.deps import KeysAdmin
from agentic_backend.identity.errors import OwnKeyRevocation
from agentic_backend.identity.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyLimits, ApiKeyPublic

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

# A key id as the database stores it (a 32-bit integer on PostgreSQL): a larger one is a 422, not an overflow.
KEY_ID_MAX = 2**31 - 1
KeyId = Annotated[int, Path(ge=1, le=KEY_ID_MAX)]


@router.get("")
async def list_keys(_: KeysAdmin, request: Request) -> list[ApiKeyPublic]:
    """Every key, revoked ones included; never a secret."""
    keys = state.of(request.app).keys
    return await keys.list()


@router.post("", status_code=201, responses={409: {"description": "The name is taken."}})
async def create_key(body: ApiKeyCreate, _: KeysAdmin, request: Request) -> ApiKeyCreated:
    """Create a key. The response holds its secret, shown this once."""
    keys = state.of(request.app).keys
    return await keys.create(
        body.name,
        body.role,
        monthly_budget_dollars=body.monthly_budget_dollars,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
    )


@router.delete(
    "/{key_id}",
    status_code=204,
    responses={
        404: {"description": "No such key."},
        409: {"description": "This is the key the request authenticated with."},
    },
)
async def revoke_key(key_id: KeyId, principal: KeysAdmin, request: Request) -> Response:
    """Revoke a key: it is refused from the next request on, by every worker and replica. Not the key the
    request itself uses: revoke it with another admin key, or with the CLI."""
    keys = state.of(request.app).keys
    if key_id == principal.key_id:
        raise OwnKeyRevocation(
            "This request authenticated with that key: revoking it would lock you out. Use another admin "
            "key, or 'agentic-backend keys revoke' on the server."
        )
    await keys.revoke(key_id)
    return Response(status_code=204)


@router.put("/{key_id}/limits", responses={404: {"description": "No such key."}})
async def set_key_limits(key_id: KeyId, body: ApiKeyLimits, _: KeysAdmin, request: Request) -> ApiKeyPublic:
    """Set a key's monthly budget and requests-per-minute limit (null: the defaults)."""
    keys = state.of(request.app).keys
    return await keys.set_limits(key_id, body.monthly_budget_dollars, body.rpm_limit, body.tpm_limit)
