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
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of requests whose span is recorded and exported (by trace id; "
        "a caller's sampled traceparent is always followed); 1.0: every request. Metrics, "
        "logs and the audit log are unaffected; an unsampled request still passes a "
        "traceparent to the engine",
    )
    json_logs: bool = Field(default=True, description="One JSON object per log line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _endpoint = field_validator("otlp_endpoint")(http_base_url)
