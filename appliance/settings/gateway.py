"""``gateway:``: the listener, its TLS, the upstream engines and how requests reach them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from appliance.settings.base import Section, http_base_url

__all__ = [
    "EngineTlsSettings",
    "GatewaySettings",
    "PolicyRoute",
    "RoutingSettings",
    "UpstreamSettings",
]


class UpstreamSettings(Section):
    """A model served by an engine the gateway forwards to."""

    model: str
    url: str
    kind: Literal["chat", "embedding"] = Field(
        default="chat",
        description="What the model does, shown in /v1/models: chat (generates: chat, "
        "completions, responses) or embedding (pooling: /v1/embeddings)",
    )

    _url = field_validator("url")(http_base_url)


class PolicyRoute(Section):
    """Send requests for ``model`` to ``to`` when the caller holds ``role`` and/or sends
    ``header`` (``name=value``, e.g. ``x-appliance-route=r1``)."""

    model: str
    to: str
    role: str | None = None
    header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]+=.+$")


class RoutingSettings(Section):
    """How requests spread over engine replicas (several upstreams with one model)."""

    prefix_affinity: bool = Field(
        default=False,
        description="Send requests sharing a conversation start or system prompt to the same "
        "replica (vLLM prefix cache); least outstanding requests otherwise",
    )
    affinity_max_imbalance: int = Field(
        default=4,
        ge=0,
        description="Leave the affine replica when it has this many more "
        "requests in flight than the least busy one",
    )
    health_interval_s: float = Field(
        default=10.0, ge=0, description="Active health checks (GET /health); 0 turns them off"
    )
    failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open a replica's circuit"
    )
    circuit_open_s: float = Field(default=30.0, gt=0, description="How long a circuit stays open")
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On shutdown, wait this long for requests in flight"
    )
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Model alias -> served model (deepseek: deepseek-v3)"
    )
    policy_routes: list[PolicyRoute] = Field(default_factory=list)


class EngineTlsSettings(Section):
    """TLS to engines on other hosts (https:// upstreams): the CA that signed their
    certificates and the gateway's client certificate for mutual TLS."""

    ca_file: Path | None = Field(default=None, description="CA bundle for engine certificates")
    cert_file: Path | None = Field(default=None, description="Gateway client certificate (mTLS)")
    key_file: Path | None = Field(default=None, description="Its private key")

    @model_validator(mode="after")
    def _pair(self) -> EngineTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("engine_tls.cert_file and key_file go together")
        return self


class GatewaySettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int | Literal["auto"] = Field(
        default="auto",
        description="Gateway worker processes on this host. auto: the usable cores, but 1 "
        "when limits.store is memory or the database is SQLite; more than 1 needs "
        "limits.store: redis when limits are set (docs/operations.md)",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(
        default=64, ge=2, le=900, description="Deepest nesting of a request body (400 beyond)"
    )
    max_array_items: int = Field(
        default=100_000, ge=1, description="Most items in one JSON array of a request body"
    )
    max_string_chars: int = Field(
        default=1_048_576, ge=1, description="Longest string in a request body"
    )
    max_request_tokens: int = Field(
        default=1_048_576,
        ge=1,
        description="Estimated prompt tokens plus max_tokens one request may ask for "
        "(400 beyond; vLLM also refuses what exceeds the model's context)",
    )
    max_embedding_inputs: int = Field(
        default=2048,
        ge=1,
        description="Most inputs in one /v1/embeddings request, and documents in one "
        "/v1/rerank or /v1/score request (400 beyond; OpenAI's limit)",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest wait for the engine's next byte"
    )
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list,
        description="Default: the local engine's served model; list a model several times "
        "for several replicas",
    )
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    engine_tls: EngineTlsSettings = Field(default_factory=EngineTlsSettings)
    tls_cert_file: Path | None = Field(
        default=None, description="Serve HTTPS with this certificate (TLS 1.2 minimum)"
    )
    tls_key_file: Path | None = Field(default=None, description="Its private key")
    tls_client_ca_file: Path | None = Field(
        default=None, description="Verify client certificates signed by this CA when sent"
    )
    hsts_max_age_s: int = Field(default=31_536_000, ge=0, description="HSTS on HTTPS; 0: off")

    @field_validator("workers")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("gateway.workers is auto or at least 1")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("gateway.tls_cert_file and tls_key_file go together")
        return self

    @model_validator(mode="after")
    def _one_kind_per_model(self) -> GatewaySettings:
        kinds: dict[str, str] = {}
        for upstream in self.upstreams:
            if kinds.setdefault(upstream.model, upstream.kind) != upstream.kind:
                raise ValueError(
                    f"gateway.upstreams: the replicas of {upstream.model} differ in kind"
                )
        return self
