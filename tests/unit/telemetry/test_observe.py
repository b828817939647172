"""appliance/telemetry/observe.py and tracing.py: a request's metrics and span, the
cached per-model metric series, trace sampling and the trace-header carrier."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import ValidationError
from starlette.datastructures import Headers

from appliance.config import TelemetrySettings
from appliance.telemetry import GatewayMetrics, Telemetry, build_tracer_provider
from appliance.telemetry.tracing import carrier

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # sampled


def _telemetry(ratio: float = 1.0) -> tuple[Telemetry, InMemorySpanExporter]:
    settings = TelemetrySettings(trace_sample_ratio=ratio)
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(settings)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(settings, GatewayMetrics(), provider), exporter


def _observe(telemetry: Telemetry, model: str = "m", headers: Headers | None = None):  # type: ignore[no-untyped-def]
    return telemetry.request(
        path="/v1/chat/completions", model=model, request_id="req-1",
        headers=headers or Headers(), stream=False, max_tokens=16,
    )  # fmt: skip


def _sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    return telemetry.metrics.registry.get_sample_value(name, labels)


def test_metrics_per_model_and_outcome_with_cached_series() -> None:
    telemetry, _ = _telemetry()
    first = _observe(telemetry)
    second = _observe(telemetry)
    assert _sample(telemetry, "appliance_requests_in_flight", model="m") == 2.0
    first.finish("ok", 200, 5, 7)
    second.finish("upstream_error", 502)
    second.finish("ok", 200)  # a second finish changes nothing
    _observe(telemetry, model="other").finish("ok", 200, 1, 1)

    assert telemetry.series("m") is telemetry.series("m")
    assert _sample(telemetry, "appliance_requests_in_flight", model="m") == 0.0
    assert _sample(telemetry, "appliance_requests_total", model="m", outcome="ok") == 1.0
    assert (
        _sample(telemetry, "appliance_requests_total", model="m", outcome="upstream_error") == 1.0
    )
    assert _sample(telemetry, "appliance_tokens_total", model="m", type="input") == 5.0
    assert _sample(telemetry, "appliance_tokens_total", model="m", type="output") == 7.0
    assert _sample(telemetry, "appliance_tokens_total", model="other", type="output") == 1.0
    assert _sample(telemetry, "appliance_token_usage_count", model="m", type="input") == 1.0
    assert _sample(telemetry, "appliance_request_duration_seconds_count", model="m") == 2.0


def test_span_attributes_and_error_status() -> None:
    telemetry, exporter = _telemetry()
    ok = _observe(telemetry)
    ok.first_chunk()
    ok.finish("ok", 200, 3, 4)
    _observe(telemetry).finish("upstream_error", 502)

    good, bad = exporter.get_finished_spans()
    assert good.attributes is not None and bad.attributes is not None
    assert good.attributes["gen_ai.usage.input_tokens"] == 3
    assert good.attributes["gen_ai.usage.output_tokens"] == 4
    assert good.attributes["http.response.status_code"] == 200
    assert good.attributes["appliance.outcome"] == "ok"
    assert "gen_ai.response.time_to_first_chunk" in good.attributes
    assert "error.type" not in good.attributes
    assert good.status.status_code is StatusCode.UNSET
    assert bad.attributes["error.type"] == "upstream_error"
    assert "gen_ai.usage.input_tokens" not in bad.attributes
    assert bad.status.status_code is StatusCode.ERROR
    assert _sample(telemetry, "appliance_time_to_first_token_seconds_count", model="m") == 1.0


def test_unsampled_requests_keep_metrics_and_pass_a_traceparent() -> None:
    telemetry, exporter = _telemetry(ratio=0.0)
    observed = _observe(telemetry)
    outgoing = observed.outgoing_headers()
    observed.finish("ok", 200, 1, 1)

    assert exporter.get_finished_spans() == ()
    flags = int(outgoing["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # the engine is told: not sampled
    assert _sample(telemetry, "appliance_requests_total", model="m", outcome="ok") == 1.0


def test_a_sampled_callers_trace_is_recorded_whatever_the_ratio() -> None:
    telemetry, exporter = _telemetry(ratio=0.0)
    _observe(telemetry, headers=Headers({"TraceParent": PARENT})).finish("ok", 200)

    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_sample_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValidationError):
        TelemetrySettings(trace_sample_ratio=ratio)


def test_carrier_takes_only_trace_headers_from_either_mapping() -> None:
    raw = {"TraceParent": PARENT, "tracestate": "a=1", "Authorization": "Bearer x"}
    expected = {"traceparent": PARENT, "tracestate": "a=1"}
    assert carrier(Headers(raw)) == expected
    assert {k.lower(): v for k, v in carrier(raw).items()} == expected
    assert carrier(Headers({"content-type": "application/json"})) == {}
