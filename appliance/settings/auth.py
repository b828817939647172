"""``auth:``: API-key hashing."""

from __future__ import annotations

from pydantic import Field, SecretStr

from appliance.settings.base import Section

__all__ = ["AuthSettings"]


class AuthSettings(Section):
    api_key_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key for stored API-key hashes; default: generated in the data dir",
    )
    api_key_cache_s: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="How long the gateway remembers an API-key lookup; a key revoked from "
        "another process stops working within this time (0: ask the database every time)",
    )
