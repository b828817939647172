"""One request's span and metrics, from admission to the last byte."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from prometheus_client import Counter, Gauge, Histogram

from appliance.config import TelemetrySettings
from appliance.telemetry.metrics import GatewayMetrics
from appliance.telemetry.tracing import PROPAGATOR, carrier, gateway_tracer

__all__ = ["RequestObservation", "Telemetry"]

T = TypeVar("T")

# OpenTelemetry GenAI operation names (gen_ai.operation.name).
_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    # Not (yet) in the GenAI conventions, which allow other values.
    "/v1/rerank": "rerank",
    "/v1/score": "score",
}


@dataclass(frozen=True)
class _ModelSeries:
    """One model's labelled metric children. ``labels()`` hashes and validates the
    label values and takes the metric's lock on every call; the children never change
    once made (nothing here removes a series), so each model looks them up once."""

    in_flight: Gauge
    latency: Histogram
    ttft: Histogram
    tokens: dict[str, tuple[Counter, Histogram]]
    outcomes: dict[str, Counter] = field(default_factory=dict)

    @classmethod
    def of(cls, metrics: GatewayMetrics, model: str) -> _ModelSeries:
        return cls(
            in_flight=metrics.in_flight.labels(model=model),
            latency=metrics.latency.labels(model=model),
            ttft=metrics.ttft.labels(model=model),
            tokens={
                kind: (
                    metrics.tokens.labels(model=model, type=kind),
                    metrics.token_usage.labels(model=model, type=kind),
                )
                for kind in ("input", "output")
            },
        )

    def requests(self, metrics: GatewayMetrics, model: str, outcome: str) -> Counter:
        counter = self.outcomes.get(outcome)
        if counter is None:
            counter = self.outcomes[outcome] = metrics.requests.labels(model=model, outcome=outcome)
        return counter


class RequestObservation:
    def __init__(
        self,
        telemetry: Telemetry,
        *,
        path: str,
        model: str,
        request_id: str,
        headers: Mapping[str, str],
        stream: bool,
        max_tokens: int | None,
    ) -> None:
        self._telemetry = telemetry
        self.model = model
        self._series = telemetry.series(model)
        self._started = time.perf_counter()
        self._ttft: float | None = None
        self._done = False
        operation = _OPERATIONS.get(path, "chat")
        parent: Context = PROPAGATOR.extract(carrier(headers))
        self.span: Span = telemetry.tracer.start_span(
            f"{operation} {model}", context=parent, kind=SpanKind.CLIENT
        )
        attributes: dict[str, str | int | bool] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": telemetry.settings.provider_name,
            "gen_ai.request.model": model,
            "gen_ai.request.stream": stream,
            "appliance.request_id": request_id,
        }
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        self.span.set_attributes(attributes)
        self._series.in_flight.inc()

    def outgoing_headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) for the engine, so its spans join ours."""
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers, context=set_span_in_context(self.span))
        return headers

    def first_chunk(self) -> None:
        if self._ttft is None:
            self._ttft = time.perf_counter() - self._started
            self._series.ttft.observe(self._ttft)
            self.span.set_attribute("gen_ai.response.time_to_first_chunk", self._ttft)

    def finish(
        self,
        outcome: str,
        status: int,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        series = self._series
        elapsed = time.perf_counter() - self._started
        series.in_flight.dec()
        series.requests(self._telemetry.metrics, self.model, outcome).inc()
        series.latency.observe(elapsed)
        attributes: dict[str, str | int] = {}
        for kind, count in (("input", input_tokens), ("output", output_tokens)):
            if count is not None:
                total, per_request = series.tokens[kind]
                total.inc(count)
                per_request.observe(count)
                attributes[f"gen_ai.usage.{kind}_tokens"] = count
        attributes["http.response.status_code"] = status
        attributes["appliance.outcome"] = outcome
        failed = status >= 400 or outcome != "ok"
        if failed:
            attributes["error.type"] = outcome
        self.span.set_attributes(attributes)  # one lock and one pass, not one per attribute
        if failed:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


class Telemetry:
    def __init__(
        self, settings: TelemetrySettings, metrics: GatewayMetrics, provider: TracerProvider
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.provider = provider
        self.tracer = gateway_tracer(provider)
        self._series: dict[str, _ModelSeries] = {}

    def series(self, model: str) -> _ModelSeries:
        """``model``'s metric children, made on its first request."""
        found = self._series.get(model)
        if found is None:
            found = self._series[model] = _ModelSeries.of(self.metrics, model)
        return found

    def request(
        self,
        *,
        path: str,
        model: str,
        request_id: str,
        headers: Mapping[str, str],
        stream: bool,
        max_tokens: int | None,
    ) -> RequestObservation:
        return RequestObservation(
            self, path=path, model=model, request_id=request_id, headers=headers,
            stream=stream, max_tokens=max_tokens,
        )  # fmt: skip

    async def timed_audit(self, write: Awaitable[T]) -> T:
        """Await an audit append, measuring the writer's lag (time until durable)."""
        started = time.perf_counter()
        self.metrics.audit_pending.inc()
        try:
            return await write
        except BaseException:
            self.metrics.audit_failures.inc()
            raise
        finally:
            self.metrics.audit_pending.dec()
            self.metrics.audit_append.observe(time.perf_counter() - started)

    def shutdown(self) -> None:
        self.provider.shutdown()
