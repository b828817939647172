"""The appliance's Keycloak realm as data (pure): roles, the two clients, and the
client scope whose mappers put the gateway in ``aud`` and the groups in ``groups``.

The same representation feeds ``appliance identity bootstrap`` (Admin REST API through
python-keycloak) and ``appliance identity export-realm`` (a RealmRepresentation JSON for
``kc.sh import`` / ``--import-realm``, the Keycloak Operator, Helm and Ansible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.identity.roles import Role

__all__ = [
    "APPLIANCE_ROLES",
    "SECRET_PLACEHOLDER",
    "RealmSpec",
    "audience_mapper",
    "browser_client",
    "client_scope",
    "gateway_client",
    "groups_mapper",
    "realm_representation",
]

APPLIANCE_ROLES: dict[str, str] = {
    Role.USER: "Use the models the policy grants to this role (chat, API)",
    Role.AUDITOR: "Compliance officer: read, verify and export the audit log",
    Role.ADMIN: "Administer API keys and configuration (no audit content)",
}


@dataclass(frozen=True)
class RealmSpec:
    public_url: str  # the gateway as browsers reach it, e.g. https://llm.example.internal
    realm: str = "appliance"
    gateway_client_id: str = "appliance-gateway"
    browser_client_id: str = "appliance-web"
    scope_name: str = "appliance"
    access_token_lifespan_s: int = 300

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")


def audience_mapper(spec: RealmSpec) -> dict[str, Any]:
    """Puts the gateway's client id into ``aud`` of access tokens (Keycloak never adds
    it by itself: the requesting client is ``azp``, not ``aud``)."""
    return {
        "name": f"{spec.gateway_client_id}-audience",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "consentRequired": False,
        "config": {
            "included.client.audience": spec.gateway_client_id,
            "access.token.claim": "true",
            "id.token.claim": "false",
            "introspection.token.claim": "true",
        },
    }


def groups_mapper() -> dict[str, Any]:
    return {
        "name": "groups",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-group-membership-mapper",
        "consentRequired": False,
        "config": {
            "claim.name": "groups",
            "full.path": "true",
            "access.token.claim": "true",
            "id.token.claim": "false",
            "userinfo.token.claim": "true",
            "introspection.token.claim": "true",
        },
    }


def client_scope(spec: RealmSpec) -> dict[str, Any]:
    return {
        "name": spec.scope_name,
        "description": "Audience and groups for the sovereign inference appliance",
        "protocol": "openid-connect",
        "attributes": {"include.in.token.scope": "false", "display.on.consent.screen": "false"},
        "protocolMappers": [audience_mapper(spec), groups_mapper()],
    }


def gateway_client(spec: RealmSpec, secret: str | None) -> dict[str, Any]:
    """Confidential, no login flows: the resource server (audience) and the client the
    gateway authenticates as for token introspection."""
    client: dict[str, Any] = {
        "clientId": spec.gateway_client_id,
        "name": "Sovereign inference appliance (gateway)",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
    }
    if secret is not None:
        client["secret"] = secret
    return client


def browser_client(spec: RealmSpec) -> dict[str, Any]:
    """Public client, authorization code with PKCE (S256) only."""
    return {
        "clientId": spec.browser_client_id,
        "name": "Sovereign inference appliance (browser sign-in)",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": True,
        "standardFlowEnabled": True,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": True,
        "redirectUris": [f"{spec.base}/auth/callback"],
        "webOrigins": [spec.base],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": f"{spec.base}/auth/logged-out",
        },
    }


SECRET_PLACEHOLDER = "${APPLIANCE_OIDC_GATEWAY_CLIENT_SECRET}"  # noqa: S105 - resolved by Keycloak


def realm_representation(
    spec: RealmSpec, *, gateway_secret: str = SECRET_PLACEHOLDER
) -> dict[str, Any]:
    """A RealmRepresentation for Keycloak's realm import. The default secret is a
    placeholder that Keycloak resolves from its environment at import time.

    The mappers sit on the browser client itself, not in a ``clientScopes`` list: an
    import that lists client scopes replaces Keycloak's built-in ones (profile, email,
    roles, basic ...), and tokens would lose ``realm_access`` and even ``sub``."""
    web = browser_client(spec)
    web["protocolMappers"] = [audience_mapper(spec), groups_mapper()]
    return {
        "realm": spec.realm,
        "enabled": True,
        "sslRequired": "external",
        "accessTokenLifespan": spec.access_token_lifespan_s,
        "roles": {
            "realm": [
                {"name": name, "description": description}
                for name, description in APPLIANCE_ROLES.items()
            ]
        },
        "clients": [gateway_client(spec, gateway_secret), web],
    }
