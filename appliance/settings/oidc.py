"""``oidc:``: Keycloak (OIDC) sign-in for people and services."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from appliance.settings.base import Section, http_base_url

__all__ = ["OidcSettings"]


class OidcSettings(Section):
    """Keycloak (OIDC) sign-in for people and services; off in the embedded default,
    where API keys are the only credential."""

    enabled: bool = False
    server_url: str | None = Field(
        default=None,
        description="Keycloak base URL as the gateway reaches it, e.g. https://sso.example.internal",
    )
    realm: str = "appliance"
    issuer: str | None = Field(
        default=None, description="Expected iss; default: <server_url>/realms/<realm>"
    )
    jwks_uri: str | None = Field(default=None, description="Default: from the discovery document")
    audiences: list[str] = Field(
        default_factory=lambda: ["appliance-gateway"],
        description="Accepted aud values (Keycloak: the audience mapper puts the gateway's "
        "client id there)",
    )
    authorized_parties: list[str] | None = Field(
        default=None, description="Accepted azp (client ids that obtained the token); default: any"
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"], description="Accepted signature algorithms (asymmetric)"
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew for exp/nbf/iat")
    jwks_max_age_s: float = Field(default=300.0, gt=0, description="Refresh the JWKS this often")
    jwks_min_refetch_interval_s: float = Field(
        default=30.0, ge=0, description="At most one refetch per interval on an unknown kid"
    )
    roles_client: str | None = Field(
        default="appliance-gateway",
        description="Client whose roles (resource_access.<client>.roles) count besides realm roles",
    )
    team_claim: str | None = Field(default=None, description="Claim that names the team")
    team_group_prefix: str | None = Field(
        default="/teams/", description="Else: the first group under this path names the team"
    )
    gateway_client_id: str = "appliance-gateway"
    gateway_client_secret: SecretStr | None = Field(
        default=None, description="Confidential client secret (needed for introspection)"
    )
    introspection: bool = Field(
        default=False, description="Accept opaque tokens through token introspection"
    )
    introspection_cache_s: float = Field(default=30.0, ge=0, le=300)
    http_timeout_s: float = Field(default=5.0, gt=0)
    ca_bundle: Path | None = Field(default=None, description="CA file for Keycloak's TLS")
    browser_client_id: str = Field(
        default="appliance-web", description="Public PKCE client for browser sign-in"
    )
    browser_client_secret: SecretStr | None = Field(
        default=None, description="Only if the browser client is confidential"
    )
    browser_scopes: str = "openid profile email"
    public_url: str | None = Field(
        default=None,
        description="The gateway's external URL (redirect URIs); default: from the request",
    )
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    session_idle_s: float = Field(default=3600.0, gt=0)
    cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto", description="Secure cookies: auto = when the request came over HTTPS"
    )

    _urls = field_validator("server_url", "issuer", "jwks_uri", "public_url")(http_base_url)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        from appliance.identity.tokens import check_algorithm_list

        check_algorithm_list(value)
        return value

    @model_validator(mode="after")
    def _server_when_enabled(self) -> OidcSettings:
        if self.enabled and not self.server_url:
            raise ValueError("oidc.server_url is required when oidc.enabled is true")
        if self.introspection and self.gateway_client_secret is None:
            raise ValueError("oidc.introspection needs oidc.gateway_client_secret")
        return self

    @property
    def effective_issuer(self) -> str:
        return self.issuer or f"{self.server_url}/realms/{self.realm}"
