"""The sections of the settings schema, one module per ``appliance.yaml`` key.

``appliance.config.Settings`` assembles them, loads them from the file and the
environment, and re-exports every class here; import from ``appliance.config``.
No module in this package reads the environment.
"""

from __future__ import annotations

from appliance.settings.audit import AuditSettings
from appliance.settings.auth import AuthSettings
from appliance.settings.base import Section
from appliance.settings.database import DatabaseSettings
from appliance.settings.egress import ProviderCredential, ProviderEgress, ProviderSettings
from appliance.settings.egress_policy import ClassificationSettings, ProviderPolicy
from appliance.settings.engine import (
    EmbeddingEngineSettings,
    EngineServerTlsSettings,
    EngineSettings,
)
from appliance.settings.gateway import (
    EngineTlsSettings,
    GatewaySettings,
    PolicyRoute,
    RoutingSettings,
    UpstreamSettings,
)
from appliance.settings.limits import LimitRule, LimitsSettings
from appliance.settings.network import NetworkSettings
from appliance.settings.oidc import OidcSettings
from appliance.settings.policy import PolicySettings
from appliance.settings.tco import TcoSettings
from appliance.settings.telemetry import TelemetrySettings

__all__ = [
    "AuditSettings",
    "AuthSettings",
    "ClassificationSettings",
    "DatabaseSettings",
    "EmbeddingEngineSettings",
    "EngineServerTlsSettings",
    "EngineSettings",
    "EngineTlsSettings",
    "GatewaySettings",
    "LimitRule",
    "LimitsSettings",
    "NetworkSettings",
    "OidcSettings",
    "PolicyRoute",
    "PolicySettings",
    "ProviderCredential",
    "ProviderEgress",
    "ProviderPolicy",
    "ProviderSettings",
    "RoutingSettings",
    "Section",
    "TcoSettings",
    "TelemetrySettings",
    "UpstreamSettings",
]
