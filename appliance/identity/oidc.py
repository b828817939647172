"""Bearer tokens from Keycloak to a :class:`Principal`: local JWT verification against
the cached JWKS, or introspection for opaque tokens when enabled."""

from __future__ import annotations

from typing import Any

from appliance.errors import ApplianceError, AuthenticationFailed
from appliance.identity.claims import ClaimMapping, principal_from_claims
from appliance.identity.introspection import IntrospectionCache, IntrospectionUnavailable
from appliance.identity.jwks import JwksCache, KeySetUnavailable
from appliance.identity.principal import Principal
from appliance.identity.tokens import (
    InvalidToken,
    TokenRules,
    check_algorithm,
    check_claims,
    key_type_for,
    looks_like_jwt,
    parse_token,
    verify_signature,
)

__all__ = ["IdentityUnavailable", "OidcVerifier"]


class IdentityUnavailable(ApplianceError):
    """Keycloak could not be reached to check a token (no cached keys, or introspection
    down): the request is refused, but it is not the caller's fault."""

    status_code = 503
    error_type = "api_error"
    code = "identity_unavailable"


class OidcVerifier:
    def __init__(
        self,
        rules: TokenRules,
        jwks: JwksCache,
        mapping: ClaimMapping,
        introspection: IntrospectionCache | None = None,
    ):
        self.rules = rules
        self.jwks = jwks
        self.mapping = mapping
        self.introspection = introspection

    async def verify_jwt(
        self, token: str, *, now: float, rules: TokenRules | None = None
    ) -> dict[str, Any]:
        """The claims of a valid token (an access token unless other ``rules`` are
        given); InvalidToken otherwise."""
        rules = rules or self.rules
        parsed = parse_token(token)
        alg = check_algorithm(parsed, rules.algorithms)
        if parsed.kid is None:
            raise InvalidToken("token has no key id (kid)")
        key = await self.jwks.key(parsed.kid, now=now)
        if key.kty != key_type_for(alg) or (key.alg is not None and key.alg != alg):
            raise InvalidToken("token algorithm does not match its signing key")
        verify_signature(parsed, alg, key.key)
        claims = parsed.claims()
        check_claims(claims, rules, now)
        return claims

    async def claims(self, token: str, *, now: float) -> dict[str, Any]:
        if looks_like_jwt(token):
            return await self.verify_jwt(token, now=now)
        if self.introspection is not None and "." not in token:
            return await self.introspection.claims(token, now=now)
        raise InvalidToken("malformed token: not a JWT")

    async def principal(self, token: str, *, now: float) -> Principal:
        """The caller, or AuthenticationFailed (401) / IdentityUnavailable (503)."""
        try:
            claims = await self.claims(token, now=now)
        except InvalidToken as refused:
            raise AuthenticationFailed(
                f"invalid token: {refused.reason}", code="invalid_token"
            ) from refused
        except (KeySetUnavailable, IntrospectionUnavailable) as exc:
            raise IdentityUnavailable(
                "the identity provider is unavailable; try again shortly"
            ) from exc
        return self.principal_from(claims)

    def principal_from(self, claims: dict[str, Any]) -> Principal:
        return principal_from_claims(claims, self.mapping)
