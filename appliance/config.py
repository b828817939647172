"""The one settings schema: ``appliance.yaml`` plus ``APPLIANCE_*`` environment overrides.

Environment variables use ``__`` for nesting (``APPLIANCE_ENGINE__PORT=8101``) and win
over the YAML file. This module is the only place that reads the process environment.
The section classes live in ``appliance.settings`` (one module per key) and are
re-exported here: import them from ``appliance.config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ConfigurationError
from appliance.settings import (
    AuditSettings,
    AuthSettings,
    ClassificationSettings,
    DatabaseSettings,
    EmbeddingEngineSettings,
    EngineServerTlsSettings,
    EngineSettings,
    EngineTlsSettings,
    GatewaySettings,
    LimitRule,
    LimitsSettings,
    NetworkSettings,
    OidcSettings,
    PolicyRoute,
    PolicySettings,
    ProviderCredential,
    ProviderEgress,
    ProviderPolicy,
    ProviderSettings,
    RoutingSettings,
    TcoSettings,
    TelemetrySettings,
    UpstreamSettings,
)
from appliance.settings.egress import validate_providers

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AuditSettings",
    "AuthSettings",
    "ClassificationSettings",
    "DatabaseSettings",
    "EmbeddingEngineSettings",
    "EngineServerTlsSettings",
    "EngineSettings",
    "EngineTlsSettings",
    "GatewaySettings",
    "LimitRule",
    "LimitsSettings",
    "NetworkSettings",
    "OidcSettings",
    "PolicyRoute",
    "PolicySettings",
    "ProviderCredential",
    "ProviderEgress",
    "ProviderPolicy",
    "ProviderSettings",
    "RoutingSettings",
    "Settings",
    "TcoSettings",
    "TelemetrySettings",
    "UpstreamSettings",
    "export_config_file",
    "load_settings",
    "masked_settings",
    "process_environment",
]

DEFAULT_CONFIG_FILE = Path("appliance.yaml")
CONFIG_FILE_ENV = "APPLIANCE_CONFIG"
# The dev model's directory name in the model store (appliance.modelstore.devmodel).
DEV_MODEL_NAME = "smollm2-135m-instruct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APPLIANCE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path(".data")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    embedding_engine: EmbeddingEngineSettings = Field(default_factory=EmbeddingEngineSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    external_providers: list[ProviderSettings] = Field(
        default_factory=list,
        description="Frontier APIs data may leave for (docs/egress.md); empty: nothing leaves",
    )
    classification: ClassificationSettings = Field(
        default_factory=ClassificationSettings,
        description="Each team's default data classification, for external providers "
        "(docs/egress.md)",
    )
    tco: TcoSettings = Field(
        default_factory=TcoSettings,
        description="The in-house cluster's cost, for appliance tco (docs/tco.md)",
    )

    _providers = field_validator("external_providers")(validate_providers)

    @model_validator(mode="after")
    def _workers_share_limits(self) -> Settings:
        """Several gateway workers count limits together only in Redis: in memory each
        would grant the whole quota again (appliance/gateway/worker_count.py)."""
        workers, limits = self.gateway.workers, self.limits
        if workers != "auto" and workers > 1 and limits.enabled and limits.store == "memory":
            raise ValueError(
                f"gateway.workers: {workers} needs limits.store: redis (limits counted in "
                "memory would be granted once per worker); set limits.store or "
                "gateway.workers: 1"
            )
        return self

    @model_validator(mode="after")
    def _engines_apart(self) -> Settings:
        """The two local engines need their own port and their own model name."""
        if not (self.engine.enabled and self.embedding_engine_enabled):
            return self
        chat, embed = self.engine, self.embedding_engine
        if (chat.host, chat.port) == (embed.host, embed.port):
            raise ValueError(
                f"embedding_engine.port: {embed.port} is the chat engine's port (engine.port)"
            )
        if chat.served_model_name == embed.served_model_name:
            raise ValueError(
                "embedding_engine.served_model_name: the chat engine serves "
                f"{chat.served_model_name} already"
            )
        return self

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
        scheme = "https" if self.engine.tls.enabled else "http"
        return f"{scheme}://{self.engine.host}:{self.engine.port}"

    @property
    def embedding_engine_enabled(self) -> bool:
        """Whether ``appliance up`` starts the local embedding engine."""
        enabled = self.embedding_engine.enabled
        return self.engine.enabled if enabled is None else enabled

    @property
    def embedding_model_dir(self) -> Path:
        """The embedding engine's weights; by default the dev model's directory."""
        return self.embedding_engine.model_dir or self.model_store / DEV_MODEL_NAME

    @property
    def embedding_engine_dtype(self) -> str:
        if self.embedding_engine.dtype:
            return self.embedding_engine.dtype
        return "float32" if self.embedding_engine.device == "cpu" else "auto"

    @property
    def embedding_engine_url(self) -> str:
        # The local engines share engine.tls (same host, same certificate).
        scheme = "https" if self.engine.tls.enabled else "http"
        return f"{scheme}://{self.embedding_engine.host}:{self.embedding_engine.port}"

    def effective_upstreams(self) -> list[UpstreamSettings]:
        """Configured upstreams, or the local engines when none are configured."""
        if self.gateway.upstreams:
            return list(self.gateway.upstreams)
        local: list[UpstreamSettings] = []
        if self.engine.enabled:
            local.append(UpstreamSettings(model=self.engine.served_model_name, url=self.engine_url))
        if self.embedding_engine_enabled:
            local.append(UpstreamSettings(
                model=self.embedding_engine.served_model_name,
                url=self.embedding_engine_url,
                kind="embedding",
            ))  # fmt: skip
        return local


def _format_error(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        problems.append(f"{key}: {item['msg']}")
    return f"invalid configuration ({source}): " + "; ".join(problems)


def export_config_file(config_file: Path) -> None:
    """Name ``config_file`` in this process's environment, so processes it spawns (the
    gateway's workers) read the same file through :func:`load_settings`."""
    os.environ[CONFIG_FILE_ENV] = str(config_file.resolve())


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
        if loaded and not all(isinstance(key, str) for key in loaded):
            odd = next(key for key in loaded if not isinstance(key, str))
            raise ConfigurationError(
                f"invalid configuration ({path}): top-level key {odd!r} is not a name"
            )
        data = loaded or {}
    elif explicit:
        raise ConfigurationError(f"configuration file not found: {path}")
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        source = f"{path} and APPLIANCE_* environment" if data else "APPLIANCE_* environment"
        raise ConfigurationError(_format_error(exc, source)) from exc


def process_environment() -> dict[str, str]:
    """A copy of this process's environment (PATH, locale, CUDA_VISIBLE_DEVICES ...):
    the base an engine's environment is built on. Read here, beside ``APPLIANCE_*``, and
    handed down by the CLI: appliance/engine never reads ``os.environ`` itself."""
    return dict(os.environ)


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
