"""``appliance identity bootstrap``: create or update the realm through Keycloak's Admin
REST API (python-keycloak ``KeycloakAdmin``). Idempotent: a second run changes nothing
it does not need to, and reports what it created or updated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from appliance.identity.realm import (
    APPLIANCE_ROLES,
    RealmSpec,
    browser_client,
    client_scope,
    gateway_client,
)

__all__ = ["BootstrapReport", "RealmAdmin", "bootstrap_realm"]


class RealmAdmin(Protocol):
    """The part of ``keycloak.KeycloakAdmin`` this module uses."""

    def get_realms(self) -> list[Any]: ...
    def create_realm(self, payload: dict[str, Any], skip_exists: bool = False) -> Any: ...
    def change_current_realm(self, realm_name: str) -> None: ...
    def get_realm_roles(self) -> list[Any]: ...
    def create_realm_role(self, payload: dict[str, Any], skip_exists: bool = False) -> Any: ...
    def get_client_scopes(self) -> list[Any]: ...
    def create_client_scope(self, payload: dict[str, Any], skip_exists: bool = False) -> Any: ...
    def get_mappers_from_client_scope(self, client_scope_id: str) -> list[Any]: ...
    def add_mapper_to_client_scope(self, client_scope_id: str, payload: dict[str, Any]) -> Any: ...
    def update_mapper_in_client_scope(
        self, client_scope_id: str, protocol_mapper_id: str, payload: dict[str, Any]
    ) -> Any: ...
    def get_client_id(self, client_id: str) -> str | None: ...
    def get_client(self, client_id: str) -> dict[str, Any]: ...
    def create_client(self, payload: dict[str, Any], skip_exists: bool = False) -> Any: ...
    def update_client(self, client_id: str, payload: dict[str, Any]) -> Any: ...
    def get_client_default_client_scopes(self, client_id: str) -> list[Any]: ...
    def add_client_default_client_scope(
        self, client_id: str, client_scope_id: str, payload: dict[str, Any]
    ) -> Any: ...
    def get_client_secrets(self, client_id: str) -> dict[str, Any]: ...


@dataclass
class BootstrapReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    gateway_secret: str | None = field(default=None, repr=False)


def _differs(current: Any, wanted: Any) -> bool:
    """Whether ``current`` lacks something of ``wanted`` (extra keys in current are fine:
    Keycloak fills in defaults)."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return True
        return any(_differs(current.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return not isinstance(current, list) or sorted(map(str, current)) != sorted(
            map(str, wanted)
        )
    return bool(current != wanted)


def _scope_id(admin: RealmAdmin, name: str) -> str | None:
    for scope in admin.get_client_scopes():
        if scope.get("name") == name:
            return str(scope["id"])
    return None


def _ensure_scope(admin: RealmAdmin, spec: RealmSpec, report: BootstrapReport) -> str:
    wanted = client_scope(spec)
    mappers = wanted.pop("protocolMappers")
    scope_id = _scope_id(admin, spec.scope_name)
    if scope_id is None:
        admin.create_client_scope(wanted, skip_exists=True)
        scope_id = _scope_id(admin, spec.scope_name)
        if scope_id is None:
            raise RuntimeError(f"client scope {spec.scope_name} was not created")
        report.created.append(f"client scope {spec.scope_name}")
    existing = {m.get("name"): m for m in admin.get_mappers_from_client_scope(scope_id)}
    for mapper in mappers:
        current = existing.get(mapper["name"])
        if current is None:
            admin.add_mapper_to_client_scope(scope_id, mapper)
            report.created.append(f"mapper {mapper['name']}")
        elif _differs(current, mapper):
            admin.update_mapper_in_client_scope(
                scope_id, str(current["id"]), {**mapper, "id": current["id"]}
            )
            report.updated.append(f"mapper {mapper['name']}")
    return scope_id


def _ensure_client(
    admin: RealmAdmin, payload: dict[str, Any], scope_id: str, report: BootstrapReport
) -> str:
    client_id = payload["clientId"]
    internal = admin.get_client_id(client_id)
    if internal is None:
        admin.create_client(payload, skip_exists=True)
        internal = admin.get_client_id(client_id)
        if internal is None:
            raise RuntimeError(f"client {client_id} was not created")
        report.created.append(f"client {client_id}")
    else:
        comparable = {
            k: v for k, v in payload.items() if k not in ("secret", "defaultClientScopes")
        }
        if "secret" in payload or _differs(admin.get_client(internal), comparable):
            admin.update_client(internal, payload)
            report.updated.append(f"client {client_id}")
    attached = {s.get("id") for s in admin.get_client_default_client_scopes(internal)}
    if scope_id not in attached:
        admin.add_client_default_client_scope(internal, scope_id, {})
        report.created.append(f"default scope of {client_id}")
    return internal


def bootstrap_realm(
    admin: RealmAdmin, spec: RealmSpec, *, gateway_secret: str | None = None
) -> BootstrapReport:
    """Create or update the realm; ``gateway_secret`` sets the gateway client's secret
    (else Keycloak's own is kept, or generated, and reported)."""
    report = BootstrapReport()
    if spec.realm not in {r.get("realm") for r in admin.get_realms()}:
        admin.create_realm(
            {
                "realm": spec.realm,
                "enabled": True,
                "sslRequired": "external",
                "accessTokenLifespan": spec.access_token_lifespan_s,
            },
            skip_exists=True,
        )
        report.created.append(f"realm {spec.realm}")
    admin.change_current_realm(spec.realm)
    roles = {r.get("name") for r in admin.get_realm_roles()}
    for name, description in APPLIANCE_ROLES.items():
        if name not in roles:
            admin.create_realm_role({"name": name, "description": description}, skip_exists=True)
            report.created.append(f"role {name}")
    scope_id = _ensure_scope(admin, spec, report)
    gateway = _ensure_client(admin, gateway_client(spec, gateway_secret), scope_id, report)
    _ensure_client(admin, browser_client(spec), scope_id, report)
    secret = admin.get_client_secrets(gateway).get("value")
    report.gateway_secret = secret if isinstance(secret, str) else None
    return report
