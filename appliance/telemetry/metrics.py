"""Prometheus metrics of one gateway process, in its own registry (no globals).

Labels carry model names, outcomes, error types and reasons: never prompt or answer
text, never user names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.audit.forward_status import ForwardStatus

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# OTel GenAI recommended boundaries (trust_layer.md §6): 0.01 .. 81.92 s, doubling.
_SECONDS = tuple(0.01 * 2**i for i in range(14))
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "appliance_requests", "Inference requests by outcome", ["model", "outcome"], registry=r
        )
        self.errors = Counter(
            "appliance_errors", "Refused or failed requests by error type and code",
            ["type", "code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "appliance_request_duration_seconds", "Time to the last byte of the answer",
            ["model"], buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "appliance_time_to_first_token_seconds", "Time to the first streamed chunk",
            ["model"], buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "appliance_tokens", "Tokens counted by the engine", ["model", "type"], registry=r
        )
        self.token_usage = Histogram(
            "appliance_token_usage", "Tokens per request", ["model", "type"],
            buckets=_TOKENS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "appliance_requests_in_flight", "Requests admitted and not finished", ["model"],
            registry=r,
        )  # fmt: skip
        self.audit_append = Histogram(
            "appliance_audit_append_seconds",
            "Audit writer lag: time until a record is durable (group commit)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.audit_pending = Gauge(
            "appliance_audit_pending_records", "Audit records waiting to be durable", registry=r
        )
        self.audit_failures = Counter(
            "appliance_audit_failures", "Audit appends that failed (requests refused)", registry=r
        )
        self.auth_failures = Counter(
            "appliance_auth_failures", "Authentication failures by reason", ["reason"], registry=r
        )
        self.limit_rejections = Counter(
            "appliance_limit_rejections", "Requests refused by a limit", ["scope", "kind"],
            registry=r,
        )  # fmt: skip
        self.upstream_attempts = Counter(
            "appliance_upstream_attempts", "Attempts at engine replicas by outcome",
            ["model", "replica", "outcome"], registry=r,
        )  # fmt: skip
        self.engine_up = Gauge(
            "appliance_engine_up", "Whether an engine replica answered its last health check",
            ["model", "replica"], registry=r,
        )  # fmt: skip

    def watch_forwarder(
        self,
        read: Callable[[], ForwardStatus],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Export the SIEM forwarder's lag, read (``read``) at every scrape: the
        forwarder is its own process, so its lag is measured from outside it."""
        self.registry.register(_ForwarderCollector(read, now))

    def watch_spool(self, pending_bytes: Callable[[], int], failures: Callable[[], int]) -> None:
        """Export the audit spool's backlog (audit.spool), read at every scrape."""
        self.registry.register(_SpoolCollector(pending_bytes, failures))

    def limit_refused(self, scope: str, kind: str) -> None:
        self.limit_rejections.labels(scope=scope, kind=kind).inc()

    def upstream_attempt(self, model: str, replica: str, outcome: str) -> None:
        self.upstream_attempts.labels(model=model, replica=replica, outcome=outcome).inc()

    def engine_checked(self, model: str, replica: str, healthy: bool) -> None:
        self.engine_up.labels(model=model, replica=replica).set(1 if healthy else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ForwarderCollector(Collector):
    """``appliance_audit_forward_*``, computed when scraped (a cursor file and one
    ``max(idx)`` query: cheap enough to run on the scrape itself)."""

    def __init__(self, read: Callable[[], ForwardStatus], now: Callable[[], datetime]):
        self._read = read
        self._now = now

    def collect(self) -> Iterator[Metric]:
        status = self._read()
        yield GaugeMetricFamily(
            "appliance_audit_forward_enabled",
            "1 while audit.forward names a SIEM (appliance audit forward)",
            value=0 if status.state == "off" else 1,
        )
        if status.state == "off":
            return
        yield GaugeMetricFamily(
            "appliance_audit_forward_behind_records",
            "Audit records not yet delivered to the SIEM (log size minus the forwarder's cursor)",
            value=status.behind,
        )
        yield GaugeMetricFamily(
            "appliance_audit_forward_last_delivery_age_seconds",
            "Seconds since the SIEM last took a batch; +Inf: never",
            value=status.age_s(self._now()),
        )
        yield GaugeMetricFamily(
            "appliance_audit_forward_error",
            "1 when the forwarder's cursor cannot be read or belongs to another log",
            value=1 if status.state == "error" else 0,
        )


class _SpoolCollector(Collector):
    """``appliance_audit_spool_*``: what waits in this process's spool to be sealed."""

    def __init__(self, pending_bytes: Callable[[], int], failures: Callable[[], int]):
        self._pending_bytes = pending_bytes
        self._failures = failures

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "appliance_audit_spool_pending_bytes",
            "Audit records spooled on local disk and not yet sealed into the log",
            value=self._pending_bytes(),
        )
        yield GaugeMetricFamily(
            "appliance_audit_spool_drain_failures",
            "Consecutive failed attempts to seal spooled records (the database is away)",
            value=self._failures(),
        )
