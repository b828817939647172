"""``limits:``: rate limits and token quotas per principal and per team."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from appliance.settings.base import Section

__all__ = ["LimitRule", "LimitsSettings"]


class LimitRule(Section):
    """One set of limits; an absent field means no limit of that kind."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute (prompt plus completion)"
    )
    concurrency: int | None = Field(default=None, ge=1, description="Requests in flight")


class LimitsSettings(Section):
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
