"""Who is calling, and what they may use."""

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
from appliance.identity.policy import allowed_models, is_model_allowed
from appliance.identity.principal import AuthMethod, Principal

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeyRecord",
    "ApiKeyService",
    "AuthMethod",
    "NewApiKey",
    "Principal",
    "allowed_models",
    "bootstrap_admin_key",
    "generate_api_key",
    "hash_api_key",
    "is_model_allowed",
]
