"""Monthly spend per team and provider: what a call costs, and the reserve-then-settle
check that refuses (429) once a team's budget would be exceeded.

Pure part: :func:`cost` (tokens x the provider's prices, :class:`~decimal.Decimal`),
:func:`budget_month` (the UTC calendar month; time is a parameter), :func:`team_budget`
and :class:`BudgetRefusal`. The store keeps whole micro-units (10^-6 of the currency) per
key ``<prefix>:<provider>:<YYYY-MM>:<team>``, expiring at the end of the following month
(last month stays readable for a month). :class:`MemorySpendStore` serves one gateway
process; :class:`~appliance.egress.budget_redis.RedisSpendStore` several replicas.

Like :mod:`appliance.limits`: reserve the estimate before the call (prompt tokens plus
``max_tokens``), refused when spent + estimate > budget; settle with the actual usage
afterwards (refund or charge the difference); usage unknown keeps the reservation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from appliance.errors import RateLimited
from appliance.settings.egress import ProviderSettings

__all__ = [
    "MICRO_UNITS",
    "BudgetLease",
    "BudgetMonth",
    "BudgetRefusal",
    "EgressBudget",
    "MemorySpendStore",
    "SpendResult",
    "SpendStore",
    "budget_month",
    "cost",
    "from_units",
    "team_budget",
    "to_units",
]

logger = logging.getLogger("appliance.egress.budget")

MICRO_UNITS = 1_000_000
"""Stored units per unit of currency."""

_PER_MILLION = Decimal(1_000_000)


def cost(provider: ProviderSettings, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Exact cost of one call in the provider's currency."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts must be 0 or more")
    spend = (
        provider.price_input_per_million * prompt_tokens
        + provider.price_output_per_million * completion_tokens
    )
    return spend / _PER_MILLION


def to_units(amount: Decimal, *, rounding: str = ROUND_CEILING) -> int:
    """Micro-units of ``amount``; spend rounds up (a budget rounds down, ``ROUND_FLOOR``)."""
    return int((amount * MICRO_UNITS).to_integral_value(rounding=rounding))


def from_units(units: int) -> Decimal:
    return Decimal(units) / MICRO_UNITS


def team_budget(provider: ProviderSettings, team: str) -> Decimal | None:
    """The team's monthly budget (its own, else ``"*"``); None: the team may not spend."""
    if team not in provider.teams:
        return None
    return provider.monthly_budget.get(team, provider.monthly_budget.get("*"))


@dataclass(frozen=True, slots=True)
class BudgetMonth:
    """A UTC calendar month: ``label`` ``2026-12``, ``[start, end)``."""

    label: str
    start: datetime
    end: datetime

    @property
    def expire_at_s(self) -> int:
        """When its keys expire: the end of the following month."""
        return int(_next_month(self.end).timestamp())


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def budget_month(now: datetime) -> BudgetMonth:
    """The month ``now`` (timezone-aware) falls in, in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    utc = now.astimezone(UTC)
    start = datetime(utc.year, utc.month, 1, tzinfo=UTC)
    return BudgetMonth(f"{utc.year:04d}-{utc.month:02d}", start, _next_month(start))


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why a call is refused: what the 429 says (amounts, never the prompt)."""

    provider: str
    team: str
    month: str
    currency: str
    budget: Decimal
    spent: Decimal
    estimate: Decimal
    retry_after_s: int

    @property
    def message(self) -> str:
        left = max(self.budget - self.spent, Decimal(0))
        return (
            f"team {self.team}'s {self.month} budget for {self.provider} is spent: "
            f"{_money(left)} of {_money(self.budget)} {self.currency} left, this request may "
            f"cost up to {_money(self.estimate)} {self.currency}; it resets at the start of "
            "next month (UTC)"
        )

    def as_error(self) -> RateLimited:
        return RateLimited(
            self.message, retry_after_s=self.retry_after_s, code="egress_budget_exceeded"
        )


def _money(amount: Decimal) -> str:
    """At least cents, at most micro-units: ``0.50``, ``0.000125``."""
    text = f"{amount.quantize(Decimal('0.000001'), rounding=ROUND_CEILING):f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class SpendResult:
    """``granted``; ``spent_units``: after the reservation if granted, else before it."""

    granted: bool
    spent_units: int


class SpendStore(Protocol):
    async def reserve(
        self, key: str, units: int, limit_units: int, *, expire_at_s: int, now_s: float
    ) -> SpendResult:
        """Atomically add ``units`` unless the total would exceed ``limit_units``."""
        ...

    async def adjust(self, key: str, delta_units: int, *, expire_at_s: int, now_s: float) -> None:
        """Add ``delta_units`` (negative: refund)."""
        ...

    async def spent(self, key: str, *, now_s: float) -> int: ...

    async def aclose(self) -> None: ...


class MemorySpendStore:
    """One process's spend in a dict; each method runs without awaiting, so on one event
    loop it is atomic without a lock."""

    def __init__(self) -> None:
        self._spent: dict[str, tuple[int, int]] = {}  # key -> (units, expire_at_s)

    def _current(self, key: str, now_s: float) -> int:
        units, expire_at_s = self._spent.get(key, (0, 0))
        if key in self._spent and expire_at_s <= now_s:
            del self._spent[key]
            return 0
        return units

    async def reserve(
        self, key: str, units: int, limit_units: int, *, expire_at_s: int, now_s: float
    ) -> SpendResult:
        spent = self._current(key, now_s)
        if spent + units > limit_units:
            return SpendResult(False, spent)
        self._spent[key] = (spent + units, expire_at_s)
        return SpendResult(True, spent + units)

    async def adjust(self, key: str, delta_units: int, *, expire_at_s: int, now_s: float) -> None:
        self._spent[key] = (self._current(key, now_s) + delta_units, expire_at_s)

    async def spent(self, key: str, *, now_s: float) -> int:
        return self._current(key, now_s)

    async def aclose(self) -> None:
        return None


class BudgetLease:
    """One admitted call's reservation; :meth:`settle` closes it (idempotent)."""

    def __init__(
        self,
        store: SpendStore,
        key: str,
        provider: ProviderSettings,
        month: BudgetMonth,
        reserved_units: int,
    ) -> None:
        self._store = store
        self.key = key
        self._provider = provider
        self._month = month
        self.reserved_units = reserved_units
        self._settled = False

    @property
    def reserved(self) -> Decimal:
        return from_units(self.reserved_units)

    async def settle(
        self, prompt_tokens: int | None, completion_tokens: int | None, *, now: datetime
    ) -> Decimal | None:
        """Charge the actual cost instead of the estimate and return it. Usage unknown
        (``None``): the reservation stays spent and None is returned. A store failure
        is logged, not raised: the answer is already served."""
        if self._settled:
            return None
        self._settled = True
        if prompt_tokens is None or completion_tokens is None:
            return None
        actual = cost(self._provider, prompt_tokens, completion_tokens)
        delta = to_units(actual) - self.reserved_units
        if delta:
            try:
                await self._store.adjust(
                    self.key, delta, expire_at_s=self._month.expire_at_s, now_s=now.timestamp()
                )
            except Exception:
                logger.exception("could not settle egress spend on %s", self.key)
        return actual

    async def release(self, *, now: datetime) -> None:
        """Nothing was sent (the call failed before reaching the provider): refund all."""
        await self.settle(0, 0, now=now)


class EgressBudget:
    """Reserve and settle spend for (provider, team) in the current UTC month."""

    def __init__(self, store: SpendStore, *, key_prefix: str = "appliance:egress:spend") -> None:
        self.store = store
        self._prefix = key_prefix

    def key(self, provider: str, team: str, month: BudgetMonth) -> str:
        # The team goes last: provider names and month labels hold no ':'.
        return f"{self._prefix}:{provider}:{month.label}:{team}"

    async def reserve(
        self,
        provider: ProviderSettings,
        team: str,
        *,
        prompt_tokens: int,
        max_completion_tokens: int,
        now: datetime,
    ) -> BudgetLease:
        """Reserve the most this call may cost, or raise the 429
        (:meth:`BudgetRefusal.as_error`). A store failure propagates: no check, no call."""
        month = budget_month(now)
        budget = team_budget(provider, team)
        estimate = cost(provider, prompt_tokens, max_completion_tokens)
        units = to_units(estimate)
        key = self.key(provider.name, team, month)
        limit = -1 if budget is None else to_units(budget, rounding=ROUND_FLOOR)
        result = await self.store.reserve(
            key, units, limit, expire_at_s=month.expire_at_s, now_s=now.timestamp()
        )
        if not result.granted:
            refusal = BudgetRefusal(
                provider=provider.name,
                team=team,
                month=month.label,
                currency=provider.currency,
                budget=budget or Decimal(0),
                spent=from_units(result.spent_units),
                estimate=estimate,
                retry_after_s=max(1, math.ceil((month.end - now).total_seconds())),
            )
            raise refusal.as_error()
        return BudgetLease(self.store, key, provider, month, units)

    async def spent(self, provider: ProviderSettings, team: str, *, now: datetime) -> Decimal:
        """What the team spent (reservations included) this month."""
        month = budget_month(now)
        units = await self.store.spent(self.key(provider.name, team, month), now_s=now.timestamp())
        return from_units(units)
