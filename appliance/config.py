"""The one settings schema: ``appliance.yaml`` plus ``APPLIANCE_*`` environment overrides.

Environment variables use ``__`` for nesting (``APPLIANCE_ENGINE__PORT=8101``) and win
over the YAML file. This module is the only place that reads the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AuditSettings",
    "AuthSettings",
    "DatabaseSettings",
    "EngineSettings",
    "EngineTlsSettings",
    "GatewaySettings",
    "LimitRule",
    "LimitsSettings",
    "NetworkSettings",
    "OidcSettings",
    "PolicyRoute",
    "PolicySettings",
    "RoutingSettings",
    "Settings",
    "TelemetrySettings",
    "UpstreamSettings",
    "load_settings",
    "masked_settings",
]

DEFAULT_CONFIG_FILE = Path("appliance.yaml")
CONFIG_FILE_ENV = "APPLIANCE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file appliance.db in the data directory. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )


class EngineSettings(_Section):
    """The local vLLM engine that ``appliance up`` starts (embedded default)."""

    enabled: bool = True
    device: Literal["cpu", "gpu"] = "cpu"
    model_dir: Path | None = Field(
        default=None, description="Model directory; default: the prepared dev model"
    )
    served_model_name: str = "smollm2-135m-instruct"
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(default=2048, ge=16)
    dtype: str | None = Field(
        default=None,
        description="vLLM --dtype; default: float32 on CPU (bfloat16 on AVX2 CPUs changes "
        "the dev model's greedy answers), auto on GPU",
    )
    kv_cache_gib: float = Field(default=1.0, gt=0, description="KV cache size (CPU engines)")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    api_key: SecretStr | None = Field(
        default=None, description="Shared secret; default: generated once in the data directory"
    )
    startup_timeout_s: float = Field(default=1200.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    extra_args: list[str] = Field(default_factory=list)


class UpstreamSettings(_Section):
    """A model served by an engine the gateway forwards to."""

    model: str
    url: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class PolicyRoute(_Section):
    """Send requests for ``model`` to ``to`` when the caller holds ``role`` and/or sends
    ``header`` (``name=value``, e.g. ``x-appliance-route=r1``)."""

    model: str
    to: str
    role: str | None = None
    header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]+=.+$")


class RoutingSettings(_Section):
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


class EngineTlsSettings(_Section):
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


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
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

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("gateway.tls_cert_file and tls_key_file go together")
        return self


class AuthSettings(_Section):
    api_key_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key for stored API-key hashes; default: generated in the data dir",
    )


def _http_base_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return None if value is None else value.rstrip("/")


class OidcSettings(_Section):
    """Keycloak (OIDC) sign-in for people and services; off in the embedded default,
    where API keys are the only credential."""

    enabled: bool = False
    server_url: str | None = Field(
        default=None,
        description="Keycloak base URL as the gateway reaches it, e.g. https://sso.example.internal",
    )
    realm: str = "appliance"
    issuer: str | None = Field(
        default=None, description="Expected iss; default: <server_url>/realms/<realm>"
    )
    jwks_uri: str | None = Field(default=None, description="Default: from the discovery document")
    audiences: list[str] = Field(
        default_factory=lambda: ["appliance-gateway"],
        description="Accepted aud values (Keycloak: the audience mapper puts the gateway's "
        "client id there)",
    )
    authorized_parties: list[str] | None = Field(
        default=None, description="Accepted azp (client ids that obtained the token); default: any"
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"], description="Accepted signature algorithms (asymmetric)"
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew for exp/nbf/iat")
    jwks_max_age_s: float = Field(default=300.0, gt=0, description="Refresh the JWKS this often")
    jwks_min_refetch_interval_s: float = Field(
        default=30.0, ge=0, description="At most one refetch per interval on an unknown kid"
    )
    roles_client: str | None = Field(
        default="appliance-gateway",
        description="Client whose roles (resource_access.<client>.roles) count besides realm roles",
    )
    team_claim: str | None = Field(default=None, description="Claim that names the team")
    team_group_prefix: str | None = Field(
        default="/teams/", description="Else: the first group under this path names the team"
    )
    gateway_client_id: str = "appliance-gateway"
    gateway_client_secret: SecretStr | None = Field(
        default=None, description="Confidential client secret (needed for introspection)"
    )
    introspection: bool = Field(
        default=False, description="Accept opaque tokens through token introspection"
    )
    introspection_cache_s: float = Field(default=30.0, ge=0, le=300)
    http_timeout_s: float = Field(default=5.0, gt=0)
    ca_bundle: Path | None = Field(default=None, description="CA file for Keycloak's TLS")
    browser_client_id: str = Field(
        default="appliance-web", description="Public PKCE client for browser sign-in"
    )
    browser_client_secret: SecretStr | None = Field(
        default=None, description="Only if the browser client is confidential"
    )
    browser_scopes: str = "openid profile email"
    public_url: str | None = Field(
        default=None,
        description="The gateway's external URL (redirect URIs); default: from the request",
    )
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    session_idle_s: float = Field(default=3600.0, gt=0)
    cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto", description="Secure cookies: auto = when the request came over HTTPS"
    )

    _urls = field_validator("server_url", "issuer", "jwks_uri", "public_url")(_http_base_url)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        from appliance.identity.tokens import check_algorithm_list

        check_algorithm_list(value)
        return value

    @model_validator(mode="after")
    def _server_when_enabled(self) -> OidcSettings:
        if self.enabled and not self.server_url:
            raise ValueError("oidc.server_url is required when oidc.enabled is true")
        if self.introspection and self.gateway_client_secret is None:
            raise ValueError("oidc.introspection needs oidc.gateway_client_secret")
        return self

    @property
    def effective_issuer(self) -> str:
        return self.issuer or f"{self.server_url}/realms/{self.realm}"


class PolicySettings(_Section):
    role_models: dict[str, list[str]] = Field(
        default_factory=lambda: {"appliance-user": ["*"], "appliance-admin": ["*"]},
        description="Role -> glob patterns of the models that role may use",
    )


class LimitRule(_Section):
    """One set of limits; an absent field means no limit of that kind."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute (prompt plus completion)"
    )
    concurrency: int | None = Field(default=None, ge=1, description="Requests in flight")


class LimitsSettings(_Section):
    """Rate limits and token quotas per principal (by role) and per team (docs/gateway.md)."""

    store: Literal["memory", "redis"] = Field(
        default="memory", description="memory: one gateway process; redis: shared by replicas"
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// (TLS, verified) URL of the shared store"
    )
    redis_ca_file: Path | None = Field(default=None, description="CA file for rediss://")
    key_prefix: str = Field(default="appliance:limits", description="Prefix of every Redis key")
    roles: dict[str, LimitRule] = Field(
        default_factory=dict,
        description="Role -> limits for each principal holding it; the most generous of a "
        "principal's roles applies; principals with none of these roles are not limited",
    )
    teams: dict[str, LimitRule] = Field(
        default_factory=dict,
        description="Team -> limits shared by its members; '*' applies to every other team",
    )
    default_max_tokens: int = Field(
        default=1024, ge=1, description="Tokens reserved for an answer when max_tokens is absent"
    )
    lease_ttl_s: float = Field(
        default=3600.0, gt=0, description="A concurrency slot a crashed gateway held expires"
    )
    priority: dict[str, int] = Field(
        default_factory=dict,
        description="Role -> vLLM request priority (lower runs first; engines started with "
        "--scheduling-policy priority); the lowest of a principal's roles is sent",
    )

    @model_validator(mode="after")
    def _redis_url_when_redis(self) -> LimitsSettings:
        if self.store == "redis" and self.redis_url is None:
            raise ValueError("limits.redis_url is required when limits.store is redis")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.roles or self.teams)


class AuditSettings(_Section):
    """The tamper-evident, encrypted audit log (docs/audit.md)."""

    origin: str = Field(
        default="appliance.local/audit",
        description="Checkpoint origin line naming this deployment's log (also the signing "
        "key's name); no spaces or '+'",
        pattern=r"^[^\s+]+$",
    )
    record_content: bool = Field(
        default=True, description="Seal prompts and answers in the encrypted envelope"
    )
    batch_max_records: int = Field(default=256, ge=1, description="Group commit: batch size")
    batch_max_wait_ms: float = Field(
        default=2.0, ge=0, description="Group commit: longest wait for more records"
    )
    checkpoint_interval_s: float = Field(
        default=10.0, gt=0, description="Sign a checkpoint at most this often while busy"
    )
    retention_days: int = Field(
        default=365, ge=1, description="`audit retention apply` drops content older than this"
    )
    key_provider: Literal["file", "vault"] = Field(
        default="file", description="Where the master key lives"
    )
    master_key_file: Path | None = Field(
        default=None, description="Default: <data_dir>/secrets/audit_master_key (mode 0600)"
    )
    signing_key_file: Path | None = Field(
        default=None, description="Default: <data_dir>/secrets/audit_signing_key (mode 0600)"
    )
    vault_url: str | None = Field(default=None, description="Vault/OpenBao base URL")
    vault_token: SecretStr | None = None
    vault_mount: str = "transit"
    vault_key: str = Field(default="appliance-audit", description="Transit key (aes256-gcm96)")

    @model_validator(mode="after")
    def _vault_complete(self) -> AuditSettings:
        if self.key_provider == "vault" and not (self.vault_url and self.vault_token):
            raise ValueError("audit.key_provider vault needs audit.vault_url and vault_token")
        return self


class TelemetrySettings(_Section):
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

    _endpoint = field_validator("otlp_endpoint")(_http_base_url)


class NetworkSettings(_Section):
    """What counts as "on the premises" (``appliance doctor``)."""

    allowed_networks: list[str] = Field(
        default_factory=lambda: [
            "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
            "fc00::/7", "fe80::/10",
        ],
        description="CIDRs every configured endpoint must resolve into",
    )  # fmt: skip

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APPLIANCE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path(".data")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so it overrides the YAML file, which arrives as init kwargs.
        return env_settings, init_settings

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_dir / 'appliance.db').resolve()}"

    @property
    def model_store(self) -> Path:
        return self.data_dir / "models"

    @property
    def engine_model_dir(self) -> Path:
        return self.engine.model_dir or self.model_store / self.engine.served_model_name

    @property
    def engine_dtype(self) -> str:
        if self.engine.dtype:
            return self.engine.dtype
        return "float32" if self.engine.device == "cpu" else "auto"

    @property
    def engine_url(self) -> str:
        return f"http://{self.engine.host}:{self.engine.port}"

    def effective_upstreams(self) -> list[UpstreamSettings]:
        """Configured upstreams, or the local engine when none are configured."""
        if self.gateway.upstreams:
            return list(self.gateway.upstreams)
        if self.engine.enabled:
            return [UpstreamSettings(model=self.engine.served_model_name, url=self.engine_url)]
        return []


def _format_error(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        problems.append(f"{key}: {item['msg']}")
    return f"invalid configuration ({source}): " + "; ".join(problems)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any) and the environment; raise ConfigurationError."""
    path = config_file
    if path is None:
        from_env = os.environ.get(CONFIG_FILE_ENV) or None
        path = Path(from_env) if from_env else DEFAULT_CONFIG_FILE
        explicit = from_env is not None
    else:
        explicit = True
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"invalid configuration ({path}): not YAML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"invalid configuration ({path}): not UTF-8") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigurationError(f"invalid configuration ({path}): top level must be a map")
        data = loaded or {}
    elif explicit:
        raise ConfigurationError(f"configuration file not found: {path}")
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        source = f"{path} and APPLIANCE_* environment" if data else "APPLIANCE_* environment"
        raise ConfigurationError(_format_error(exc, source)) from exc


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets shown as '**********'."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    dumped["database"]["url"] = _mask_url_password(settings.database_url)
    return dumped


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the store, not here
        return url
