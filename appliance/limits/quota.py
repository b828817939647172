"""Quota arithmetic: token buckets and concurrency slots. Pure: values in, values out;
time is a parameter (seconds, any monotonic-enough epoch shared by all gateways).

A per-minute limit ``L`` is a bucket of capacity ``L`` that refills at ``L / 60`` per
second, so a client may burst up to ``L`` and then sustains ``L`` per minute. Token
quotas reserve an estimate up front (prompt estimate + ``max_tokens``) and settle on the
real usage afterwards: the difference is refunded, or charged, which may take the
level below zero so the next request waits until the debt has refilled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Bucket",
    "BucketRule",
    "Taken",
    "refill",
    "retry_after",
    "settle",
    "take",
    "whole_seconds",
]


@dataclass(frozen=True)
class BucketRule:
    """A limit of ``per_minute`` units, as a bucket."""

    per_minute: int

    @property
    def capacity(self) -> float:
        return float(self.per_minute)

    @property
    def rate_per_s(self) -> float:
        return self.per_minute / 60.0

    def clamp(self, amount: float) -> float:
        """A single reservation never exceeds the capacity, so it can always fit once the
        bucket is full (a 4096-token answer under a 1000 TPM quota still runs, alone).
        Compared before the float conversion: an integer past a double's range (a body
        may carry one) clamps instead of raising OverflowError."""
        return float(min(amount, self.per_minute))


@dataclass(frozen=True)
class Bucket:
    level: float
    updated_s: float

    @classmethod
    def full(cls, rule: BucketRule, now_s: float) -> Bucket:
        return cls(rule.capacity, now_s)


@dataclass(frozen=True)
class Taken:
    allowed: bool
    bucket: Bucket
    retry_after_s: float  # 0 when allowed


def refill(bucket: Bucket, rule: BucketRule, now_s: float) -> Bucket:
    elapsed = max(0.0, now_s - bucket.updated_s)
    level = min(rule.capacity, bucket.level + elapsed * rule.rate_per_s)
    return Bucket(level, max(now_s, bucket.updated_s))


def retry_after(level: float, amount: float, rule: BucketRule) -> float:
    """Seconds until a bucket at ``level`` holds ``amount``."""
    missing = amount - level
    return 0.0 if missing <= 0 else missing / rule.rate_per_s


def take(bucket: Bucket | None, rule: BucketRule, amount: float, now_s: float) -> Taken:
    """Take ``amount`` (clamped to the capacity) if the refilled bucket holds it."""
    current = refill(bucket or Bucket.full(rule, now_s), rule, now_s)
    wanted = rule.clamp(amount)
    if current.level >= wanted:
        return Taken(True, Bucket(current.level - wanted, current.updated_s), 0.0)
    return Taken(False, current, retry_after(current.level, wanted, rule))


def settle(bucket: Bucket | None, rule: BucketRule, delta: float, now_s: float) -> Bucket:
    """Refund (``delta > 0``) or charge (``delta < 0``) after the fact; the level may go
    negative (a debt) but never above the capacity."""
    current = refill(bucket or Bucket.full(rule, now_s), rule, now_s)
    return Bucket(min(rule.capacity, current.level + delta), current.updated_s)


def whole_seconds(seconds: float) -> int:
    """Retry-After is whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))
