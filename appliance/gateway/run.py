"""The one way a command runs the gateway: the same TLS, proxy-header and logging
settings whether it is `appliance serve` or `appliance up`, in one process or in
``gateway.workers`` processes sharing the listening socket."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from appliance.audit.retention import RetentionPolicy, enforce_floor
from appliance.config import Settings, export_config_file
from appliance.gateway.app import create_app
from appliance.gateway.tls import gateway_server_config
from appliance.gateway.worker import WORKER_APP
from appliance.gateway.worker_count import plan_workers, usable_cpus
from appliance.keys.deployment import DeploymentSecrets
from appliance.telemetry import configure_logging

__all__ = ["gateway_url", "run_gateway"]

logger = logging.getLogger(__name__)

_SERVER_OPTIONS: dict[str, Any] = {"log_level": "info", "proxy_headers": False, "log_config": None}


def gateway_url(settings: Settings) -> str:
    scheme = "https" if settings.gateway.tls_cert_file else "http"
    return f"{scheme}://{settings.gateway.host}:{settings.gateway.port}"


def run_gateway(
    settings: Settings,
    secrets: DeploymentSecrets | None = None,
    *,
    config_file: Path | None = None,
) -> None:
    """Serve until interrupted (blocking). A retention period below the floor, or a
    worker count the limits cannot follow, is refused here, before uvicorn, so the
    command exits non-zero with one line. ``config_file``: where ``settings`` came from
    (None: ``$APPLIANCE_CONFIG`` or ./appliance.yaml), read again by each worker."""
    enforce_floor(RetentionPolicy.from_settings(settings.audit.retention))
    plan = plan_workers(settings, cpus=usable_cpus())
    configure_logging(json_logs=settings.telemetry.json_logs, level=settings.telemetry.log_level)
    logger.info(plan.reason)
    if plan.count == 1:
        app = create_app(settings) if secrets is None else create_app(settings, secrets=secrets)
        uvicorn.Server(gateway_server_config(app, settings, **_SERVER_OPTIONS)).run()
        return
    if config_file is not None:
        # Spawned workers inherit the environment: this is how they find the same file.
        export_config_file(config_file)
    config = gateway_server_config(
        WORKER_APP, settings, factory=True, workers=plan.count, **_SERVER_OPTIONS
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()
