"""One request's admission and settlement over the quota state it touches. Pure.

The stores differ only in how they make a read-decide-write atomic: the memory store
calls these functions on its dicts; the Redis store runs the same steps as one Lua
script inside Redis (a differential test in tests/unit/limits keeps the two equal).

An admission is all or nothing: every bucket charge and concurrency slot of one request
is granted together, or the first refusal is returned and nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appliance.limits.quota import Bucket, BucketRule, settle, take

__all__ = [
    "BucketCharge",
    "Refusal",
    "SlotClaim",
    "admit",
    "settle_all",
]


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


def admit(
    charges: Sequence[BucketCharge],
    buckets: Sequence[Bucket | None],
    slots: Sequence[SlotClaim],
    held: Sequence[int],
    now_s: float,
) -> Refusal | list[Bucket]:
    """``buckets[i]`` is the stored state of ``charges[i]`` (None: never used, full);
    ``held[j]`` the unexpired leases on ``slots[j]``. Returns the first refusal, or the
    buckets to store (the store then adds the lease to every slot)."""
    taken: list[Bucket] = []
    for index, (charge, bucket) in enumerate(zip(charges, buckets, strict=True)):
        result = take(bucket, charge.rule, charge.amount, now_s)
        if not result.allowed:
            return Refusal(index, result.retry_after_s)
        taken.append(result.bucket)
    for offset, (slot, count) in enumerate(zip(slots, held, strict=True)):
        if count >= slot.limit:
            return Refusal(len(charges) + offset, 1.0)
    return taken


def settle_all(
    adjustments: Sequence[BucketCharge], stored: Mapping[str, Bucket], now_s: float
) -> dict[str, Bucket]:
    """The buckets to store after refunding (``amount > 0``) or charging (``< 0``)
    each, in order (two adjustments of one key both count)."""
    settled: dict[str, Bucket] = {}
    for adjustment in adjustments:
        current = settled.get(adjustment.key, stored.get(adjustment.key))
        settled[adjustment.key] = settle(current, adjustment.rule, adjustment.amount, now_s)
    return settled
