"""Egress spend shared by several gateway replicas in Redis: one integer per
(provider, month, team) key, each reservation one Lua script (atomic on the server)
doing what :class:`~appliance.egress.budget.MemorySpendStore` does in-process.
``tests/unit/egress/test_budget.py`` runs the same cases against both."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from appliance.egress.budget import SpendResult
from appliance.limits.redis_store import redis_client

__all__ = ["RedisSpendStore"]

# Integers below 2^53 micro-units (9 billion in currency) compare exactly as Lua numbers.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local units = tonumber(ARGV[1])
if spent + units > tonumber(ARGV[2]) then
  return {0, spent}
end
local after = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, after}
"""

_ADJUST = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 0
"""


class RedisSpendStore:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._reserve = client.register_script(_RESERVE)
        self._adjust = client.register_script(_ADJUST)

    @classmethod
    def from_url(cls, url: str, *, ca_file: Path | None = None) -> RedisSpendStore:
        return cls(redis_client(url, ca_file=ca_file))

    async def reserve(
        self, key: str, units: int, limit_units: int, *, expire_at_s: int, now_s: float
    ) -> SpendResult:
        granted, spent = await self._reserve(
            keys=[key], args=[str(units), str(limit_units), str(expire_at_s)]
        )
        return SpendResult(bool(int(granted)), int(spent))

    async def adjust(self, key: str, delta_units: int, *, expire_at_s: int, now_s: float) -> None:
        await self._adjust(keys=[key], args=[str(delta_units), str(expire_at_s)])

    async def spent(self, key: str, *, now_s: float) -> int:
        value = await self._client.get(key)
        return 0 if value is None else int(value)

    async def aclose(self) -> None:
        await self._client.aclose()
