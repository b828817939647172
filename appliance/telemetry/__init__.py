"""Prometheus metrics, OpenTelemetry traces (GenAI conventions) and JSON logs; no
prompt or answer text in any of them."""

from __future__ import annotations

from appliance.telemetry.logs import REQUEST_ID, JsonFormatter, configure_logging
from appliance.telemetry.metrics import GatewayMetrics
from appliance.telemetry.observe import RequestObservation, Telemetry
from appliance.telemetry.routes import router as metrics_router
from appliance.telemetry.tracing import build_tracer_provider

__all__ = [
    "REQUEST_ID",
    "GatewayMetrics",
    "JsonFormatter",
    "RequestObservation",
    "Telemetry",
    "build_tracer_provider",
    "configure_logging",
    "metrics_router",
]
