"""Where quota state lives: the interface, and the in-process store (embedded default).

A store applies a whole admission atomically: every bucket charge and concurrency slot
of one request is granted together or not at all. What to grant is decided by
:mod:`appliance.limits.admission`; a store only reads and writes state atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from appliance.limits.admission import BucketCharge, Refusal, SlotClaim, admit, settle_all
from appliance.limits.quota import Bucket

__all__ = ["BucketCharge", "LimitStore", "MemoryLimitStore", "Refusal", "SlotClaim"]


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

    def _live(self, key: str, now_s: float) -> dict[str, float]:
        held = self._slots.setdefault(key, {})
        for stale in [lease for lease, expiry in held.items() if expiry <= now_s]:
            del held[stale]
        return held

    async def acquire(
        self,
        charges: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
        lease_ttl_s: float,
    ) -> Refusal | None:
        held = [self._live(slot.key, now_s) for slot in slots]
        decision = admit(
            charges, [self._buckets.get(c.key) for c in charges],
            slots, [len(leases) for leases in held], now_s,
        )  # fmt: skip
        if isinstance(decision, Refusal):
            return decision
        for charge, bucket in zip(charges, decision, strict=True):
            self._buckets[charge.key] = bucket
        for leases in held:
            leases[lease_id] = now_s + lease_ttl_s
        return None

    async def release(
        self,
        adjustments: Sequence[BucketCharge],
        slots: Sequence[SlotClaim],
        *,
        lease_id: str,
        now_s: float,
    ) -> None:
        self._buckets.update(settle_all(adjustments, self._buckets, now_s))
        for slot in slots:
            self._slots.get(slot.key, {}).pop(lease_id, None)

    async def aclose(self) -> None:
        return None
