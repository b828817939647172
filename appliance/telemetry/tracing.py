"""OpenTelemetry traces: a span per inference request with the GenAI semantic-convention
attributes (trust_layer.md §6), W3C trace context passed on to vLLM, and OTLP/HTTP export
only to a configured on-prem collector. The opt-in content attributes
(``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``)
are never set.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.datastructures import Headers

from appliance.config import TelemetrySettings

__all__ = ["PROPAGATOR", "build_tracer_provider", "gateway_tracer", "header_getter"]

PROPAGATOR = TraceContextTextMapPropagator()
header_getter: DefaultGetter = DefaultGetter()


def build_tracer_provider(
    settings: TelemetrySettings, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider of its own (the global one is left alone). Spans go to ``exporter``
    (tests) or to the configured OTLP endpoint; with neither they are recorded nowhere."""
    # Parent-based: a caller's sampling decision (its traceparent) is kept, so one trace
    # is never half recorded; requests that start a trace are sampled by trace id.
    # An unsampled span is not recorded, so it costs neither attributes nor export.
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if exporter is None and settings.otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint,
            certificate_file=str(settings.otlp_ca_file) if settings.otlp_ca_file else None,
        )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def gateway_tracer(provider: TracerProvider) -> Tracer:
    return provider.get_tracer("appliance.gateway")


_TRACE_HEADERS = ("traceparent", "tracestate")


def carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace headers of an incoming request, for extraction."""
    if isinstance(headers, Headers):
        # Two case-insensitive look-ups instead of decoding every header of the request.
        return {k: v for k in _TRACE_HEADERS if (v := headers.get(k)) is not None}
    return {k: v for k, v in headers.items() if k.lower() in _TRACE_HEADERS}
