"""Rate limits and token quotas per principal and per team: pure arithmetic
(:mod:`~appliance.limits.quota`), stores (memory, Redis) and the gateway's limiter."""

from __future__ import annotations

from appliance.limits.limiter import Lease, Limiter, RefusalObserver
from appliance.limits.quota import Bucket, BucketRule, Taken, refill, settle, take
from appliance.limits.rules import (
    Limits,
    estimate_tokens,
    principal_limits,
    request_priority,
    reservation,
    team_limits,
)
from appliance.limits.store import BucketCharge, LimitStore, MemoryLimitStore, Refusal, SlotClaim
from appliance.limits.wiring import build_limiter

__all__ = [
    "Bucket",
    "BucketCharge",
    "BucketRule",
    "Lease",
    "LimitStore",
    "Limiter",
    "Limits",
    "MemoryLimitStore",
    "Refusal",
    "RefusalObserver",
    "SlotClaim",
    "Taken",
    "build_limiter",
    "estimate_tokens",
    "principal_limits",
    "refill",
    "request_priority",
    "reservation",
    "settle",
    "take",
    "team_limits",
]
