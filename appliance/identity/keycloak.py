"""The I/O edge to Keycloak for the gateway: discovery (python-keycloak), the JWKS
document, introspection, and the token endpoint for browser sign-in.

Everything that decides (claims, keys, policy) is elsewhere; this module only talks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from keycloak import KeycloakOpenID

from appliance.config import OidcSettings
from appliance.identity.claims import ClaimMapping
from appliance.identity.introspection import IntrospectionCache
from appliance.identity.jwks import JwksCache
from appliance.identity.oidc import OidcVerifier
from appliance.identity.tokens import TokenRules

__all__ = ["KeycloakGateway", "build_verifier", "token_rules"]


class KeycloakGateway:
    """One realm as the gateway sees it. Discovery is fetched on first use and kept."""

    def __init__(self, settings: OidcSettings, http: httpx.AsyncClient | None = None):
        assert settings.server_url is not None
        self.settings = settings
        verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
        self.http = http or httpx.AsyncClient(
            timeout=settings.http_timeout_s, verify=verify, follow_redirects=False
        )
        self._owns_http = http is None
        secret = settings.gateway_client_secret
        self.openid = KeycloakOpenID(
            server_url=settings.server_url + "/",
            realm_name=settings.realm,
            client_id=settings.gateway_client_id,
            client_secret_key=secret.get_secret_value() if secret else None,
            verify=verify,
            timeout=int(max(1, settings.http_timeout_s)),
        )
        self._discovery: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            async with self._lock:
                if self._discovery is None:
                    self._discovery = dict(await self.openid.a_well_known())
        return self._discovery

    async def endpoint(self, name: str) -> str:
        value = (await self.discovery()).get(name)
        if not isinstance(value, str):
            raise LookupError(f"the realm's discovery document has no {name}")
        return value

    async def fetch_jwks(self) -> Mapping[str, Any]:
        uri = self.settings.jwks_uri or await self.endpoint("jwks_uri")
        response = await self.http.get(uri, headers={"accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("JWKS is not a JSON object")
        return document

    async def introspect(self, token: str) -> Mapping[str, Any]:
        answer = await self.openid.a_introspect(token)
        if not isinstance(answer, dict):
            raise ValueError("introspection answer is not a JSON object")
        return answer

    async def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """Authorization code + PKCE verifier for tokens, as the browser client."""
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, data: dict[str, str]) -> dict[str, Any]:
        """A token-endpoint call as the browser client (public, or confidential)."""
        data = {**data, "client_id": self.settings.browser_client_id}
        if self.settings.browser_client_secret is not None:
            data["client_secret"] = self.settings.browser_client_secret.get_secret_value()
        response = await self.http.post(await self.endpoint("token_endpoint"), data=data)
        response.raise_for_status()
        tokens = response.json()
        if not isinstance(tokens, dict) or not isinstance(tokens.get("access_token"), str):
            raise ValueError("token endpoint answer has no access_token")
        return tokens

    async def aclose(self) -> None:
        await self.openid.connection.aclose()
        if self._owns_http:
            await self.http.aclose()


def token_rules(settings: OidcSettings) -> TokenRules:
    return TokenRules(
        issuer=settings.effective_issuer,
        audiences=frozenset(settings.audiences),
        algorithms=tuple(settings.algorithms),
        leeway_s=settings.leeway_s,
        authorized_parties=(
            None if settings.authorized_parties is None else frozenset(settings.authorized_parties)
        ),
    )


def build_verifier(settings: OidcSettings, keycloak: KeycloakGateway) -> OidcVerifier:
    rules = token_rules(settings)
    return OidcVerifier(
        rules=rules,
        jwks=JwksCache(
            keycloak.fetch_jwks,
            max_age_s=settings.jwks_max_age_s,
            min_refetch_interval_s=settings.jwks_min_refetch_interval_s,
        ),
        mapping=ClaimMapping(
            roles_client=settings.roles_client,
            team_claim=settings.team_claim,
            team_group_prefix=settings.team_group_prefix,
        ),
        introspection=(
            IntrospectionCache(keycloak.introspect, rules, cache_s=settings.introspection_cache_s)
            if settings.introspection
            else None
        ),
    )
