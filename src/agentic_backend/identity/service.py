"""API keys: create, list, revoke, verify, and the first admin key."""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from agentic_backend.core.clock import Clock
from agentic_backend.core.db import Database
from agentic_backend.identity import keys
from agentic_backend.identity.errors import InvalidKeyRequest, KeyNameTaken, KeyNotFound
from agentic_backend.identity.invalidation import UNKNOWN, Generation, generation_for
from agentic_backend.identity.models import ApiKey
from agentic_backend.identity.permissions import Role
from agentic_backend.identity.schemas import ApiKeyCreated, ApiKeyPublic, Principal

ADMIN_KEY_NAME = "admin"


def _public(row: ApiKey) -> ApiKeyPublic:
    # Field by field from the row's attributes: a column added to both cannot be left out here.
    return ApiKeyPublic.model_validate(row, from_attributes=True)


class KeyService:
    """Keys in the database. ``verify`` remembers a valid key's principal for ``cache_seconds`` (keyed by
    the key's SHA-256, never the key): the lookup is the costliest step of an authenticated request. A
    remembered key is used only under the keys' generation it was verified in (identity/invalidation.py):
    revoking a key or changing its limits bumps it, so every worker and replica stops serving the old
    verification at once."""

    _CACHE_MAX = 10_000  # valid keys remembered; past it the memory starts afresh

    def __init__(
        self,
        database: Database,
        clock: Clock,
        cache_seconds: float = 0.0,
        generation: Generation | None = None,
    ) -> None:
        self._db = database
        self._clock = clock
        self._cache_seconds = cache_seconds
        self.generation = generation or generation_for(database.url)
        self._verified: dict[str, tuple[float, int, Principal]] = {}
        self._verify_query = select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.role,
            ApiKey.secret_hash,
            ApiKey.revoked_at,
            ApiKey.monthly_budget_dollars,
            ApiKey.rpm_limit,
            ApiKey.tpm_limit,
        ).where(ApiKey.public_id == bindparam("public_id"))

    async def create(
        self,
        name: str,
        role: str,
        *,
        secret: str | None = None,
        monthly_budget_dollars: float | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
    ) -> ApiKeyCreated:
        try:
            role = Role(role).value
        except ValueError:
            raise InvalidKeyRequest(
                f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}."
            ) from None
        key = secret or keys.generate()
        row = ApiKey(
            name=name,
            role=role,
            public_id=keys.public_id(key),
            secret_hash=keys.secret_hash(key),
            created_at=self._clock.now(),
            monthly_budget_dollars=monthly_budget_dollars,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
        )
        async with self._db.session() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise KeyNameTaken(
                    f"an API key named {name!r} exists already; choose another name."
                ) from None
        return ApiKeyCreated(**_public(row).model_dump(), key=key)

    async def list(self) -> list[ApiKeyPublic]:
        async with self._db.session() as session:
            rows = (await session.scalars(select(ApiKey).order_by(ApiKey.id))).all()
        return [_public(row) for row in rows]

    async def revoke(self, id_or_name: int | str) -> ApiKeyPublic:
        async with self._db.session() as session:
            column = ApiKey.id if isinstance(id_or_name, int) else ApiKey.name
            row = await session.scalar(select(ApiKey).where(column == id_or_name))
            if row is None:
                raise KeyNotFound(f"no API key {id_or_name!r}; 'keys list' shows the keys.")
            if row.revoked_at is None:
                row.revoked_at = self._clock.now()
                await session.commit()
                await self._changed()
            return _public(row)

    async def _changed(self) -> None:
        self._verified.clear()
        await self.generation.bump()

    async def verify(self, key: str) -> tuple[Principal | None, str]:
        """The principal of a valid key, or None and why not: ``malformed``, ``unknown`` or ``revoked``."""
        if len(key) > keys.MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            keys.matches(key[: keys.MAX_KEY_LENGTH], None)  # same work as a real check
            return None, "malformed"
        digest = keys.secret_hash(key)
        # Read before the lookup: a change committed after this makes what the lookup finds stale.
        generation = self.generation.current() if self._cache_seconds > 0 else UNKNOWN
        remembered = self._verified.get(digest)
        if (
            remembered is not None
            and remembered[1] == generation
            and generation != UNKNOWN
            and remembered[0] > self._clock.monotonic()
        ):
            return remembered[2], "ok"
        # Core, not the ORM: this runs on every request, and skipping the session and identity map halves it.
        async with self._db.autocommit.connect() as connection:
            row = (await connection.execute(self._verify_query, {"public_id": keys.public_id(key)})).first()
        if not keys.digest_matches(digest, row.secret_hash if row is not None else None) or row is None:
            return None, "unknown"
        if row.revoked_at is not None:
            return None, "revoked"
        principal = principal_of(row)
        if generation != UNKNOWN:
            if len(self._verified) >= self._CACHE_MAX:
                self._verified.clear()
            self._verified[digest] = (self._clock.monotonic() + self._cache_seconds, generation, principal)
        return principal, "ok"

    async def set_limits(
        self, key_id: int, budget: float | None, rpm: int | None, tpm: int | None = None
    ) -> ApiKeyPublic:
        async with self._db.session() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(f"no API key {key_id!r}; 'keys list' shows the keys.")
            row.monthly_budget_dollars = budget
            row.rpm_limit = rpm
            row.tpm_limit = tpm
            await session.commit()
            await self._changed()
            return _public(row)

    async def count(self) -> int:
        async with self._db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)

    async def ensure_admin(self, configured: str | None) -> None:
        """On first start (no keys at all) create the admin key: the configured one, or a new one printed
        once on the terminal (never logged)."""
        if await self.count() > 0:
            return
        try:
            created = await self.create(ADMIN_KEY_NAME, Role.ADMIN, secret=configured)
        except KeyNameTaken:
            return  # another worker or replica created it first
        if configured is None:
            print(
                "\n  No API keys existed, so an admin key was created. It is shown this once:\n\n"
                f"      {created.key}\n\n"
                "  Use it as 'Authorization: Bearer <key>'; create more with "
                "'agentic-backend keys create'.\n",
                file=sys.stderr,
                flush=True,
            )


def principal_of(row: Any) -> Principal:
    """The principal of an ``api_keys`` row (an ORM ``ApiKey`` or a Core row of its columns)."""
    return Principal(
        key_id=row.id,
        name=row.name,
        role=row.role,
        monthly_budget_dollars=row.monthly_budget_dollars,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
    )
