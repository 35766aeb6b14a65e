"""``/api/v1/keys``: API key administration (``keys:admin``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from agentic_backend.identity.deps import KeysAdmin, KeyServiceDep
from agentic_backend.identity.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyLimits, ApiKeyPublic

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.get("")
async def list_keys(_: KeysAdmin, keys: KeyServiceDep) -> list[ApiKeyPublic]:
    """Every key, revoked ones included; never a secret."""
    return await keys.list()


@router.post("", status_code=201, responses={409: {"description": "The name is taken."}})
async def create_key(body: ApiKeyCreate, _: KeysAdmin, keys: KeyServiceDep) -> ApiKeyCreated:
    """Create a key. The response holds its secret, shown this once."""
    return await keys.create(
        body.name, body.role, monthly_budget_dollars=body.monthly_budget_dollars, rpm_limit=body.rpm_limit
    )


@router.delete("/{key_id}", status_code=204, responses={404: {"description": "No such key."}})
async def revoke_key(key_id: int, _: KeysAdmin, keys: KeyServiceDep) -> Response:
    """Revoke a key: it is refused from the next request on."""
    await keys.revoke(key_id)
    return Response(status_code=204)


@router.put("/{key_id}/limits", responses={404: {"description": "No such key."}})
async def set_key_limits(key_id: int, body: ApiKeyLimits, _: KeysAdmin, keys: KeyServiceDep) -> ApiKeyPublic:
    """Set a key's monthly budget and requests-per-minute limit (null: the defaults)."""
    return await keys.set_limits(key_id, body.monthly_budget_dollars, body.rpm_limit)
