"""The authenticated caller, whatever way it signed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["AuthMethod", "Principal"]


class AuthMethod(StrEnum):
    API_KEY = "api_key"
    OIDC = "oidc"


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str
    auth_method: AuthMethod
    roles: frozenset[str] = field(default_factory=frozenset)
    # Extra restriction carried by the credential itself (an API key's model globs);
    # None means the credential adds no restriction beyond the roles.
    model_globs: tuple[str, ...] | None = None
    team: str | None = None
    key_id: str | None = None
    email: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    # OIDC only: the client that obtained the token (Keycloak ``azp``), and where the
    # effective ``roles`` came from (realm roles, and the configured client's roles).
    client_id: str | None = None
    realm_roles: frozenset[str] = field(default_factory=frozenset)
    client_roles: frozenset[str] = field(default_factory=frozenset)

    def has_role(self, role: str) -> bool:
        return role in self.roles
