"""Admission against the configured limits, and settlement after the answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from appliance.errors import RateLimited
from appliance.identity.principal import Principal
from appliance.limits.quota import BucketRule, whole_seconds
from appliance.limits.rules import Limits, principal_limits, team_limits
from appliance.limits.store import BucketCharge, LimitStore, SlotClaim

__all__ = ["Lease", "Limiter", "RefusalObserver"]

logger = logging.getLogger("appliance.limits")

# Told which limit refused a request, e.g. ("principal", "tpm"); for metrics.
RefusalObserver = Callable[[str, str], None]


@dataclass(frozen=True)
class _Claim:
    scope: str  # "principal" or "team"
    kind: str  # "rpm", "tpm" or "concurrency"
    label: str


class Lease:
    """What one admitted request holds; :meth:`settle` returns it (idempotent)."""

    def __init__(
        self,
        limiter: Limiter,
        lease_id: str,
        token_charges: list[BucketCharge],
        slots: list[SlotClaim],
    ) -> None:
        self._limiter = limiter
        self.lease_id = lease_id
        self._token_charges = token_charges
        self._slots = slots
        self._settled = False

    @property
    def reserved_tokens(self) -> float:
        return max((c.amount for c in self._token_charges), default=0.0)

    async def settle(self, used_tokens: int | None) -> None:
        """Refund the reservation less what was used (or charge the excess) and free the
        concurrency slots. ``None``: usage unknown, keep the reservation."""
        if self._settled:
            return
        self._settled = True
        adjustments = [
            BucketCharge(c.key, c.rule, c.amount - used_tokens)
            for c in self._token_charges
            if used_tokens is not None and c.amount != used_tokens
        ]
        if not adjustments and not self._slots:
            return
        try:
            await self._limiter.store.release(
                adjustments, self._slots, lease_id=self.lease_id, now_s=self._limiter.clock()
            )
        except Exception:  # the slot expires on its own; the answer is already served
            logger.exception("could not settle quota lease %s", self.lease_id)


class Limiter:
    def __init__(
        self,
        store: LimitStore,
        *,
        roles: Mapping[str, Limits],
        teams: Mapping[str, Limits],
        key_prefix: str,
        lease_ttl_s: float,
        clock: Callable[[], float] = time.time,
        on_refusal: RefusalObserver | None = None,
    ) -> None:
        self.store = store
        self._roles = dict(roles)
        self._teams = dict(teams)
        self._prefix = key_prefix
        self._lease_ttl_s = lease_ttl_s
        self.clock = clock
        self._on_refusal = on_refusal

    def _claims(
        self, principal: Principal, tokens: int
    ) -> tuple[list[BucketCharge], list[SlotClaim], list[_Claim], list[BucketCharge]]:
        charges: list[BucketCharge] = []
        slots: list[SlotClaim] = []
        charge_claims: list[_Claim] = []
        slot_claims: list[_Claim] = []
        token_charges: list[BucketCharge] = []
        scopes = [
            ("principal", f"p:{principal.subject}", "your", principal_limits(
                principal.roles, self._roles)),
            ("team", f"t:{principal.team}", f"team {principal.team}'s", team_limits(
                principal.team, self._teams)),
        ]  # fmt: skip
        for scope, key, whose, limits in scopes:
            if limits is None:
                continue
            base = f"{self._prefix}:{key}"
            if limits.rpm is not None:
                charges.append(BucketCharge(f"{base}:rpm", BucketRule(limits.rpm), 1.0))
                charge_claims.append(_Claim(scope, "rpm", f"{whose} requests per minute"))
            if limits.tpm is not None:
                rule = BucketRule(limits.tpm)
                charge = BucketCharge(f"{base}:tpm", rule, rule.clamp(tokens))
                charges.append(charge)
                token_charges.append(charge)
                charge_claims.append(_Claim(scope, "tpm", f"{whose} tokens per minute"))
            if limits.concurrency is not None:
                slots.append(SlotClaim(f"{base}:inflight", limits.concurrency))
                slot_claims.append(_Claim(scope, "concurrency", f"{whose} concurrent requests"))
        return charges, slots, charge_claims + slot_claims, token_charges

    async def admit(self, principal: Principal, reserve_tokens: int) -> Lease:
        """Reserve one request and ``reserve_tokens`` tokens, or raise RateLimited."""
        charges, slots, claims, token_charges = self._claims(principal, reserve_tokens)
        lease_id = uuid.uuid4().hex
        if not claims:
            return Lease(self, lease_id, [], [])
        refusal = await self.store.acquire(
            charges, slots, lease_id=lease_id, now_s=self.clock(), lease_ttl_s=self._lease_ttl_s
        )
        if refusal is not None:
            claim = claims[refusal.index]
            if self._on_refusal is not None:
                self._on_refusal(claim.scope, claim.kind)
            raise RateLimited(
                f"rate limit reached: {claim.label}; retry later",
                retry_after_s=whole_seconds(refusal.retry_after_s),
                code="concurrency_limit_exceeded" if claim.kind == "concurrency" else None,
            )
        return Lease(self, lease_id, token_charges, slots)
