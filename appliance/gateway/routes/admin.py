"""Admin API (role ``appliance-admin``): API keys (create, list, revoke) and the
engines' LoRA adapters (list, load, unload; :mod:`appliance.gateway.adapter_control`).

Creating and revoking a key are audit records (``admin.api_key.create`` and
``.revoke``, never the secret), as are loading and unloading an adapter
(``admin.adapter.load`` / ``.unload``); a key whose creation cannot be recorded is revoked at
once and the caller gets 503. An admin cannot revoke the key they are calling with.

The secret of a new key is in the creation answer only; the store keeps its keyed hash.
An admin may grant only roles they hold themselves, so the admin role cannot mint an
auditor key (admins do not read audit content unless they are auditors too).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from appliance.audit.records import AuditEvent
from appliance.errors import AuditUnavailable, InvalidRequest, ModelNotFound, PermissionDenied
from appliance.gateway.acts import write_act
from appliance.gateway.adapter_control import (
    AdapterState,
    adapter_states,
    load_adapter,
    unload_adapter,
)
from appliance.gateway.deps import PrincipalDep, ServicesDep, require_role
from appliance.identity.apikeys import TEAM_PATTERN, ApiKeyRecord
from appliance.identity.roles import Role

__all__ = ["ADMIN_ROLE", "router"]

ADMIN_ROLE = Role.ADMIN

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[require_role(ADMIN_ROLE)])


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What the key is for")
    owner: str = Field(min_length=1, max_length=200, description="Responsible person/service")
    roles: list[str] = Field(default_factory=lambda: [Role.USER.value], min_length=1)
    models: list[str] | None = Field(default=None, description="Model globs; default: by role")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    team: str | None = Field(
        default=None,
        pattern=TEAM_PATTERN,
        description="The team the caller acts for (adapters are served to their teams)",
    )


class ApiKeyView(BaseModel):
    key_id: str
    name: str
    owner: str
    roles: list[str]
    models: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    team: str | None = None

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
            team=record.team,
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
    body: CreateApiKey, request: Request, principal: PrincipalDep, services: ServicesDep
) -> CreatedApiKey:
    beyond = sorted(set(body.roles) - principal.roles)
    if beyond:
        raise PermissionDenied(
            f"you cannot grant roles you do not hold: {', '.join(beyond)}",
            code="role_not_grantable",
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
            team=body.team,
        )
    )
    view = ApiKeyView.of(created.record)
    try:  # the key works only once its creation is on record
        await write_act(
            services, request, event=AuditEvent.API_KEY_CREATE, principal=principal,
            status_code=201, params=_key_facts(view),
        )  # fmt: skip
    except AuditUnavailable:
        await anyio.to_thread.run_sync(lambda: services.api_keys.revoke(view.key_id, now=now))
        raise
    return CreatedApiKey(**view.model_dump(), api_key=created.secret)


def _key_facts(view: ApiKeyView) -> dict[str, object]:
    """What the audit record says about a key: never its secret."""
    return {
        "key_id": view.key_id,
        "key_name": view.name,
        "key_owner": view.owner,
        "key_roles": view.roles,
        "key_models": view.models,
        "key_team": view.team,
        "key_expires_at": None if view.expires_at is None else view.expires_at.isoformat(),
    }


@router.get("/api-keys", summary="List API keys (never their secrets)")
async def list_api_keys(services: ServicesDep) -> ApiKeyList:
    records = await anyio.to_thread.run_sync(services.api_keys.list)
    return ApiKeyList(data=[ApiKeyView.of(record) for record in records])


@router.delete("/api-keys/{key_id}", summary="Revoke an API key at once")
async def revoke_api_key(
    key_id: str, request: Request, principal: PrincipalDep, services: ServicesDep
) -> RevokedApiKey:
    if key_id == principal.key_id:
        # With one admin key (the bootstrap key), this would lock every admin out.
        raise InvalidRequest(
            "you are signed in with this key: revoke it with another admin key",
            code="cannot_revoke_own_key",
        )
    now = services.clock()
    found = await anyio.to_thread.run_sync(lambda: services.api_keys.get(key_id))
    if found is None or found.revoked_at is not None:
        raise ModelNotFound(f"no active API key with id {key_id}", code="api_key_not_found")
    await write_act(  # on record before it takes effect
        services, request, event=AuditEvent.API_KEY_REVOKE, principal=principal,
        status_code=200, params=_key_facts(ApiKeyView.of(found)),
    )  # fmt: skip
    # Through the cache when there is one, so this process forgets the key at once.
    keys = services.api_key_cache or services.api_keys
    revoked = await anyio.to_thread.run_sync(lambda: keys.revoke(key_id, now=now))
    if not revoked:
        raise ModelNotFound(f"no active API key with id {key_id}", code="api_key_not_found")
    if services.sessions is not None:  # browser sessions made with it end now too
        services.sessions.end_key_sessions(key_id)
    return RevokedApiKey(key_id=key_id, revoked=True)


class AdapterView(BaseModel):
    model: str = Field(description="How callers name it: <model>:<adapter>")
    name: str
    base: str = Field(description="The served model it runs on")
    rank: int
    teams: list[str]
    manifest_sha256: str
    loaded: bool | None = Field(description="Loaded on every replica; None: none answered")
    loaded_on: int | None = Field(description="Replicas that have it loaded")
    replicas: int
    verified: bool = Field(description="Its files match its manifest (else never served)")

    @classmethod
    def of(cls, state: AdapterState) -> AdapterView:
        adapter = state.adapter
        return cls(
            model=state.model,
            name=adapter.name,
            base=state.parent,
            rank=adapter.rank,
            teams=list(adapter.teams),
            manifest_sha256=adapter.manifest_sha256,
            loaded=None if state.loaded_on is None else state.loaded_on == state.replicas > 0,
            loaded_on=state.loaded_on,
            replicas=state.replicas,
            verified=state.verified,
        )


class AdapterList(BaseModel):
    data: list[AdapterView]


@router.get("/adapters", summary="List the LoRA adapters and whether the engines have them")
async def list_adapters(services: ServicesDep) -> AdapterList:
    return AdapterList(data=[AdapterView.of(state) for state in await adapter_states(services)])


@router.post("/adapters/{model}/load", summary="Load an adapter into its model's engines")
async def load(
    model: str, request: Request, principal: PrincipalDep, services: ServicesDep
) -> AdapterView:
    return AdapterView.of(await load_adapter(services, request, principal, model))


@router.post("/adapters/{model}/unload", summary="Unload an adapter from its model's engines")
async def unload(
    model: str, request: Request, principal: PrincipalDep, services: ServicesDep
) -> AdapterView:
    return AdapterView.of(await unload_adapter(services, request, principal, model))
