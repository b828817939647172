"""``appliance serve``: the gateway alone, in front of engines started elsewhere."""

from __future__ import annotations

from appliance.audit.retention import RetentionPolicy, enforce_floor
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.gateway.run import gateway_url, run_gateway

__all__ = ["serve"]


def serve(config: ConfigOption = None) -> None:
    """Run the gateway (run `appliance db upgrade` first)."""
    settings = settings_from(config)
    enforce_floor(RetentionPolicy.from_settings(settings.audit.retention))  # before "on"
    console.print(f"gateway on {gateway_url(settings)}")
    run_gateway(settings, config_file=config)
