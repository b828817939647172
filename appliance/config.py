"""The one settings schema: ``appliance.yaml`` plus ``APPLIANCE_*`` environment overrides.

Environment variables use ``__`` for nesting (``APPLIANCE_ENGINE__PORT=8101``) and win
over the YAML file. This module is the only place that reads the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AuthSettings",
    "DatabaseSettings",
    "EngineSettings",
    "GatewaySettings",
    "PolicySettings",
    "Settings",
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


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest wait for the engine's next byte"
    )
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list, description="Default: the local engine's served model"
    )


class AuthSettings(_Section):
    api_key_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key for stored API-key hashes; default: generated in the data dir",
    )


class PolicySettings(_Section):
    role_models: dict[str, list[str]] = Field(
        default_factory=lambda: {"appliance-user": ["*"], "appliance-admin": ["*"]},
        description="Role -> glob patterns of the models that role may use",
    )


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
