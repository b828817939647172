"""Who is calling, and what they may use.

The core is pure (token checks, claims to principal, policy); the edges are the JWKS
cache, introspection, sessions and the Keycloak client (``identity.keycloak``,
``identity.browser``, ``identity.bootstrap``, imported where needed).
"""

from __future__ import annotations

from appliance.identity.apikeys import (
    API_KEY_PREFIX,
    ApiKeyRecord,
    ApiKeyService,
    NewApiKey,
    bootstrap_admin_key,
    generate_api_key,
    hash_api_key,
)
from appliance.identity.claims import ClaimMapping, principal_from_claims
from appliance.identity.introspection import IntrospectionCache
from appliance.identity.jwks import JwksCache, KeySetUnavailable, SigningKey, parse_jwks
from appliance.identity.oidc import IdentityUnavailable, OidcVerifier
from appliance.identity.policy import (
    allowed_models,
    denial_reason,
    is_model_allowed,
    roles_granting,
)
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.sessions import BrowserSession, PendingLogin, SessionStore
from appliance.identity.tokens import InvalidToken, TokenRules

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeyRecord",
    "ApiKeyService",
    "AuthMethod",
    "BrowserSession",
    "ClaimMapping",
    "IdentityUnavailable",
    "IntrospectionCache",
    "InvalidToken",
    "JwksCache",
    "KeySetUnavailable",
    "NewApiKey",
    "OidcVerifier",
    "PendingLogin",
    "Principal",
    "SessionStore",
    "SigningKey",
    "TokenRules",
    "allowed_models",
    "bootstrap_admin_key",
    "denial_reason",
    "generate_api_key",
    "hash_api_key",
    "is_model_allowed",
    "parse_jwks",
    "principal_from_claims",
    "roles_granting",
]
