"""The one way a command runs the gateway: the same TLS, proxy-header and logging
settings whether it is `appliance serve` or `appliance up`."""

from __future__ import annotations

import uvicorn

from appliance.audit.retention import RetentionPolicy, enforce_floor
from appliance.config import Settings
from appliance.gateway.app import create_app
from appliance.gateway.tls import gateway_server_config
from appliance.keys.deployment import DeploymentSecrets
from appliance.telemetry import configure_logging

__all__ = ["gateway_url", "run_gateway"]


def gateway_url(settings: Settings) -> str:
    scheme = "https" if settings.gateway.tls_cert_file else "http"
    return f"{scheme}://{settings.gateway.host}:{settings.gateway.port}"


def run_gateway(settings: Settings, secrets: DeploymentSecrets | None = None) -> None:
    """Serve until interrupted (blocking). A retention period below the floor is
    refused here, before uvicorn, so the command exits non-zero with one line."""
    enforce_floor(RetentionPolicy.from_settings(settings.audit.retention))
    configure_logging(json_logs=settings.telemetry.json_logs, level=settings.telemetry.log_level)
    app = create_app(settings) if secrets is None else create_app(settings, secrets=secrets)
    server_config = gateway_server_config(
        app, settings, log_level="info", proxy_headers=False, log_config=None
    )
    uvicorn.Server(server_config).run()
