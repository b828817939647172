"""Prometheus metrics of one gateway process, in its own registry (no globals).

Labels carry model names, outcomes, error types and reasons: never prompt or answer
text, never user names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def limit_refused(self, scope: str, kind: str) -> None:
        self.limit_rejections.labels(scope=scope, kind=kind).inc()

    def upstream_attempt(self, model: str, replica: str, outcome: str) -> None:
        self.upstream_attempts.labels(model=model, replica=replica, outcome=outcome).inc()

    def engine_checked(self, model: str, replica: str, healthy: bool) -> None:
        self.engine_up.labels(model=model, replica=replica).set(1 if healthy else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
