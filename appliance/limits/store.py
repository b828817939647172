"""Where quota state lives: the interface, and the in-process store (embedded default).

A store applies a whole admission atomically: every bucket charge and concurrency slot
of one request is granted together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from appliance.limits.quota import Bucket, BucketRule, settle, take

__all__ = ["BucketCharge", "LimitStore", "MemoryLimitStore", "Refusal", "SlotClaim"]


@dataclass(frozen=True)
class BucketCharge:
    key: str
    rule: BucketRule
    amount: float  # already clamped to the rule's capacity when charged up front


@dataclass(frozen=True)
class SlotClaim:
    key: str
    limit: int


@dataclass(frozen=True)
class Refusal:
    """Which claim failed: ``index`` into charges, then slots (charges first)."""

    index: int
    retry_after_s: float


class LimitStore(Protocol):
    async def acquire(
        self,
        charges: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
        lease_ttl_s: float,
    ) -> Refusal | None:
        """Grant everything or nothing; return the first refusal."""
        ...

    async def release(
        self,
        adjustments: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
    ) -> None:
        """Settle buckets by ``amount`` (refund > 0, charge < 0) and free the slots."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimitStore:
    """One process's quotas in a dict. Each method runs without awaiting, so on one event
    loop it is atomic without a lock."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._slots: dict[str, dict[str, float]] = {}  # key -> lease id -> expiry

    async def acquire(
        self,
        charges: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
        lease_ttl_s: float,
    ) -> Refusal | None:
        taken: list[Bucket] = []
        for index, charge in enumerate(charges):
            result = take(self._buckets.get(charge.key), charge.rule, charge.amount, now_s)
            if not result.allowed:
                return Refusal(index, result.retry_after_s)
            taken.append(result.bucket)
        for offset, slot in enumerate(slots):
            held = self._slots.setdefault(slot.key, {})
            for stale in [lease for lease, expiry in held.items() if expiry <= now_s]:
                del held[stale]
            if len(held) >= slot.limit:
                return Refusal(len(charges) + offset, 1.0)
        for charge, bucket in zip(charges, taken, strict=True):
            self._buckets[charge.key] = bucket
        for slot in slots:
            self._slots[slot.key][lease_id] = now_s + lease_ttl_s
        return None

    async def release(
        self,
        adjustments: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
    ) -> None:
        for adjustment in adjustments:
            self._buckets[adjustment.key] = settle(
                self._buckets.get(adjustment.key), adjustment.rule, adjustment.amount, now_s
            )
        for slot in slots:
            self._slots.get(slot.key, {}).pop(lease_id, None)

    async def aclose(self) -> None:
        return None
