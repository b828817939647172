"""``appliance serve``: the gateway alone, in front of engines started elsewhere."""

from __future__ import annotations

import uvicorn

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.gateway import create_app

__all__ = ["serve"]


def serve(config: ConfigOption = None) -> None:
    """Run the gateway (run `appliance db upgrade` first)."""
    settings = settings_from(config)
    console.print(f"gateway on http://{settings.gateway.host}:{settings.gateway.port}")
    uvicorn.run(
        create_app(settings),
        host=settings.gateway.host,
        port=settings.gateway.port,
        log_level="info",
        proxy_headers=False,
    )
