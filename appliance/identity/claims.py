"""Keycloak access-token claims to a :class:`Principal` (pure).

Keycloak puts realm roles in ``realm_access.roles`` and each client's roles in
``resource_access.<client-id>.roles``; ``groups`` appears only with a group-membership
mapper (full paths such as ``/teams/research`` unless "full group path" is off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.identity.principal import AuthMethod, Principal

__all__ = ["ClaimMapping", "principal_from_claims"]


@dataclass(frozen=True)
class ClaimMapping:
    # Client whose roles count besides the realm roles (None: realm roles only).
    roles_client: str | None = "appliance-gateway"
    # The team: this claim when present, else the first group under this prefix.
    team_claim: str | None = None
    team_group_prefix: str | None = "/teams/"


def _strings(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def _roles_of(container: Any) -> frozenset[str]:
    return _strings(container.get("roles")) if isinstance(container, Mapping) else frozenset()


def _team(claims: Mapping[str, Any], groups: frozenset[str], mapping: ClaimMapping) -> str | None:
    if mapping.team_claim:
        value = claims.get(mapping.team_claim)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0]
    prefix = mapping.team_group_prefix
    if prefix:
        for group in sorted(groups):
            if group.startswith(prefix) and len(group) > len(prefix):
                return group[len(prefix) :].split("/", 1)[0]
    return None


def principal_from_claims(claims: Mapping[str, Any], mapping: ClaimMapping) -> Principal:
    """The caller described by already-verified claims."""
    subject = str(claims["sub"])
    realm_roles = _roles_of(claims.get("realm_access"))
    client_roles: frozenset[str] = frozenset()
    resource_access = claims.get("resource_access")
    if mapping.roles_client and isinstance(resource_access, Mapping):
        client_roles = _roles_of(resource_access.get(mapping.roles_client))
    groups = _strings(claims.get("groups"))
    username = claims.get("preferred_username")
    email = claims.get("email")
    client_id = claims.get("azp") or claims.get("client_id")
    return Principal(
        subject=subject,
        username=username if isinstance(username, str) and username else subject,
        auth_method=AuthMethod.OIDC,
        roles=realm_roles | client_roles,
        team=_team(claims, groups, mapping),
        email=email if isinstance(email, str) else None,
        groups=groups,
        client_id=client_id if isinstance(client_id, str) else None,
        realm_roles=realm_roles,
        client_roles=client_roles,
    )
