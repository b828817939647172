"""Build the limiter the settings describe."""

from __future__ import annotations

from appliance.config import LimitRule, LimitsSettings
from appliance.limits.limiter import Limiter, RefusalObserver
from appliance.limits.rules import Limits
from appliance.limits.store import LimitStore, MemoryLimitStore

__all__ = ["build_limiter"]


def _limits(rule: LimitRule) -> Limits:
    return Limits(rpm=rule.rpm, tpm=rule.tpm, concurrency=rule.concurrency)


def build_limiter(
    settings: LimitsSettings, *, on_refusal: RefusalObserver | None = None
) -> Limiter:
    store: LimitStore
    if settings.store == "redis" and settings.redis_url is not None:
        from appliance.limits.redis_store import RedisLimitStore

        store = RedisLimitStore.from_url(
            settings.redis_url.get_secret_value(), ca_file=settings.redis_ca_file
        )
    else:
        store = MemoryLimitStore()
    return Limiter(
        store,
        roles={role: _limits(rule) for role, rule in settings.roles.items()},
        teams={team: _limits(rule) for team, rule in settings.teams.items()},
        key_prefix=settings.key_prefix,
        lease_ttl_s=settings.lease_ttl_s,
        on_refusal=on_refusal,
    )
