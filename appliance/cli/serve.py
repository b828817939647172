"""``appliance serve``: the gateway alone, in front of engines started elsewhere."""

from __future__ import annotations

import uvicorn

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.gateway import create_app
from appliance.gateway.tls import gateway_server_config
from appliance.telemetry import configure_logging

__all__ = ["serve"]


def serve(config: ConfigOption = None) -> None:
    """Run the gateway (run `appliance db upgrade` first)."""
    settings = settings_from(config)
    scheme = "https" if settings.gateway.tls_cert_file else "http"
    console.print(f"gateway on {scheme}://{settings.gateway.host}:{settings.gateway.port}")
    configure_logging(json_logs=settings.telemetry.json_logs, level=settings.telemetry.log_level)
    server_config = gateway_server_config(
        create_app(settings), settings, log_level="info", proxy_headers=False, log_config=None
    )
    uvicorn.Server(server_config).run()
