"""The long-lived objects a gateway process holds, built in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from appliance.audit.sink import AuditSink
from appliance.config import Settings
from appliance.gateway.adapter_models import AdapterCatalog
from appliance.gateway.json_guard import JsonLimits
from appliance.gateway.upstream import Upstream
from appliance.identity.apikey_cache import ApiKeyCache
from appliance.identity.apikeys import ApiKeyService
from appliance.identity.keycloak import KeycloakGateway
from appliance.identity.oidc import OidcVerifier
from appliance.identity.sessions import SessionStore
from appliance.limits import Limiter
from appliance.telemetry import Telemetry

if TYPE_CHECKING:  # egress_call reaches back here through the audit helpers
    from appliance.gateway.egress_call import EgressServices

__all__ = ["GatewayServices", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class GatewayServices:
    settings: Settings
    database: Engine
    api_keys: ApiKeyService
    audit: AuditSink
    upstream: Upstream
    clock: Callable[[], datetime] = utc_now
    # Short-lived API-key lookups (auth.api_key_cache_s); None: every request asks the DB.
    api_key_cache: ApiKeyCache | None = None
    # Keycloak (settings.oidc.enabled): token verifier, realm client, browser sessions.
    identity: OidcVerifier | None = None
    keycloak: KeycloakGateway | None = None
    sessions: SessionStore | None = None
    # Rate limits and token quotas (settings.limits); None when none are configured.
    limiter: Limiter | None = None
    # Metrics and traces (settings.telemetry).
    telemetry: Telemetry | None = None
    # The served models' LoRA adapters (read from the model store at start).
    adapters: AdapterCatalog = field(default_factory=AdapterCatalog)
    # Adapter directories verified against their manifests, by path: the files' names,
    # sizes and mtimes then (appliance.gateway.adapter_control re-verifies on change).
    adapter_verified: dict[str, object] = field(default_factory=dict)
    # External providers (settings.external_providers); None when none is declared.
    egress: EgressServices | None = None

    @cached_property
    def json_limits(self) -> JsonLimits:
        """What a request body may hold (parser limits from ``gateway.*``); made once,
        not per request."""
        gateway = self.settings.gateway
        return JsonLimits(
            max_depth=gateway.max_json_depth,
            max_array_items=gateway.max_array_items,
            max_string_chars=gateway.max_string_chars,
        )
