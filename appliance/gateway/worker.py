"""A gateway worker process, when ``gateway.workers`` is more than 1.

uvicorn spawns each worker afresh and imports :func:`app_factory` by name, so a worker
cannot be handed the parent's objects: it rebuilds the settings from the same sources
(the environment, which :func:`appliance.gateway.run.run_gateway` completes with
``APPLIANCE_CONFIG`` before spawning, and the configuration file) and, in its lifespan,
the deployment secrets from their files. No secret travels on a command line.
"""

from __future__ import annotations

from fastapi import FastAPI

from appliance.config import load_settings
from appliance.gateway.app import create_app
from appliance.telemetry import configure_logging

__all__ = ["WORKER_APP", "app_factory"]

WORKER_APP = f"{__name__}:app_factory"


def app_factory() -> FastAPI:
    """The gateway of one worker process (its own lifespan, pools and audit writer)."""
    settings = load_settings()
    configure_logging(json_logs=settings.telemetry.json_logs, level=settings.telemetry.log_level)
    return create_app(settings)
