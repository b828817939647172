"""Admin API for API keys (role ``appliance-admin``): create, list, revoke.

The secret of a new key is in the creation answer only; the store keeps its keyed hash.
An admin may grant only roles they hold themselves, so the admin role cannot mint an
auditor key (admins do not read audit content unless they are auditors too).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio.to_thread
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from appliance.errors import ModelNotFound, PermissionDenied
from appliance.gateway.deps import PrincipalDep, ServicesDep
from appliance.identity.apikeys import ApiKeyRecord
from appliance.identity.principal import Principal

__all__ = ["ADMIN_ROLE", "router"]

ADMIN_ROLE = "appliance-admin"


async def _require_admin(principal: PrincipalDep) -> Principal:
    if not principal.has_role(ADMIN_ROLE):
        raise PermissionDenied(f"this needs the role {ADMIN_ROLE}", code="missing_role")
    return principal


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(_require_admin)])


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What the key is for")
    owner: str = Field(min_length=1, max_length=200, description="Responsible person/service")
    roles: list[str] = Field(default_factory=lambda: ["appliance-user"], min_length=1)
    models: list[str] | None = Field(default=None, description="Model globs; default: by role")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyView(BaseModel):
    key_id: str
    name: str
    owner: str
    roles: list[str]
    models: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyView:
        return cls(
            key_id=record.key_id,
            name=record.name,
            owner=record.owner,
            roles=list(record.roles),
            models=None if record.models is None else list(record.models),
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
        )


class CreatedApiKey(ApiKeyView):
    api_key: str = Field(description="The secret, shown this once")


class ApiKeyList(BaseModel):
    data: list[ApiKeyView]


class RevokedApiKey(BaseModel):
    key_id: str
    revoked: bool


@router.post("/api-keys", status_code=201, summary="Create an API key (secret shown once)")
async def create_api_key(
    body: CreateApiKey, principal: PrincipalDep, services: ServicesDep
) -> CreatedApiKey:
    beyond = sorted(set(body.roles) - principal.roles)
    if beyond:
        raise PermissionDenied(
            f"you cannot grant roles you do not hold: {', '.join(beyond)}", code="missing_role"
        )
    now = services.clock()
    expires = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    created = await anyio.to_thread.run_sync(
        lambda: services.api_keys.create(
            name=body.name,
            owner=body.owner,
            roles=body.roles,
            models=body.models,
            now=now,
            expires_at=expires,
        )
    )
    view = ApiKeyView.of(created.record)
    return CreatedApiKey(**view.model_dump(), api_key=created.secret)


@router.get("/api-keys", summary="List API keys (never their secrets)")
async def list_api_keys(services: ServicesDep) -> ApiKeyList:
    records = await anyio.to_thread.run_sync(services.api_keys.list)
    return ApiKeyList(data=[ApiKeyView.of(record) for record in records])


@router.delete("/api-keys/{key_id}", summary="Revoke an API key at once")
async def revoke_api_key(key_id: str, services: ServicesDep) -> RevokedApiKey:
    # Through the cache when there is one, so this process forgets the key at once.
    keys = services.api_key_cache or services.api_keys
    revoked = await anyio.to_thread.run_sync(lambda: keys.revoke(key_id, now=services.clock()))
    if not revoked:
        raise ModelNotFound(f"no active API key with id {key_id}", code="api_key_not_found")
    return RevokedApiKey(key_id=key_id, revoked=True)
