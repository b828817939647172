"""``telemetry:``: metrics, traces and logs, exported only on the premises."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from appliance.settings.base import Section, http_base_url

__all__ = ["TelemetrySettings"]


class TelemetrySettings(Section):
    """Metrics, traces and logs. Nothing is exported unless an on-premises endpoint is
    configured; prompt and answer text never appears in any of them."""

    metrics_enabled: bool = Field(default=True, description="Serve Prometheus /metrics")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint of the on-prem collector, e.g. "
        "https://otel.example.internal:4318/v1/traces; none: no export",
    )
    otlp_ca_file: Path | None = Field(default=None, description="CA file for the collector")
    service_name: str = "appliance-gateway"
    provider_name: str = Field(
        default="vllm", description="gen_ai.provider.name (no registered value for vLLM)"
    )
    json_logs: bool = Field(default=True, description="One JSON object per log line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _endpoint = field_validator("otlp_endpoint")(http_base_url)
