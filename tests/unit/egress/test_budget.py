"""Egress spend: exact cost, UTC months, and reserve-then-settle against the memory store
and a real Redis (the same cases for both)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from appliance.egress.budget import (
    BudgetRefusal,
    EgressBudget,
    MemorySpendStore,
    SpendStore,
    budget_month,
    cost,
    from_units,
    team_budget,
    to_units,
)
from appliance.egress.budget_redis import RedisSpendStore
from appliance.errors import RateLimited
from appliance.settings.egress import ProviderSettings
from tests.support.redis import require_redis

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


def _provider(**change: Any) -> ProviderSettings:
    raw: dict[str, Any] = {
        "name": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": {"secret_file": "/etc/appliance/secrets/openai.key"},
        "max_classification": "internal",
        "teams": ["research", "marketing"],
        "models": ["gpt-4.1@openai"],
        "price_input_per_million": "2.00",
        "price_output_per_million": "8.00",
        "monthly_budget": {"research": "1.00", "*": "0.01"},
        "egress": {"cidrs": ["162.159.140.0/24"]},
    }
    raw.update(change)
    return ProviderSettings.model_validate(raw)


def test_cost_is_exact() -> None:
    provider = _provider(price_input_per_million="0.15", price_output_per_million="0.6")
    assert cost(provider, 1_000_000, 0) == Decimal("0.15")
    assert cost(provider, 1, 1) == Decimal("0.00000075")
    assert cost(provider, 123_456, 7_890) == Decimal("0.0232524")
    assert cost(provider, 0, 0) == 0
    with pytest.raises(ValueError):
        cost(provider, -1, 0)


def test_units_round_spend_up_and_budgets_down() -> None:
    assert to_units(Decimal("0.00000075")) == 1
    assert to_units(Decimal("0.0232524")) == 23253
    assert to_units(Decimal("0.0000019"), rounding="ROUND_FLOOR") == 1
    assert from_units(23253) == Decimal("0.023253")


@pytest.mark.parametrize(
    ("now", "label", "end"),
    [
        (NOW, "2026-12", datetime(2027, 1, 1, tzinfo=UTC)),
        (
            datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC),
            "2027-01",
            datetime(2027, 2, 1, tzinfo=UTC),
        ),
        # 00:30 on 1 January in Berlin is still December in UTC.
        (
            datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-12",
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_months_are_utc_calendar_months(now: datetime, label: str, end: datetime) -> None:
    month = budget_month(now)
    assert (month.label, month.end) == (label, end)
    assert month.start <= now < month.end


def test_keys_expire_a_month_after_their_month() -> None:
    assert budget_month(NOW).expire_at_s == int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
    with pytest.raises(ValueError, match="timezone-aware"):
        budget_month(datetime(2026, 12, 6))  # naive on purpose


def test_team_budget_falls_back_to_star_and_refuses_strangers() -> None:
    provider = _provider()
    assert team_budget(provider, "research") == Decimal("1.00")
    assert team_budget(provider, "marketing") == Decimal("0.01")
    assert team_budget(provider, "legal") is None


def test_refusal_message_names_amounts_only() -> None:
    refusal = BudgetRefusal(
        "openai", "research", "2026-12", "USD", Decimal(500), Decimal("499.7"),
        Decimal("0.000125"), 3600,
    )  # fmt: skip
    assert refusal.message == (
        "team research's 2026-12 budget for openai is spent: 0.30 of 500.00 USD left, "
        "this request may cost up to 0.000125 USD; it resets at the start of next month (UTC)"
    )
    error = refusal.as_error()
    assert error.status_code == 429 and error.code == "egress_budget_exceeded"
    assert error.retry_after_s == 3600


@pytest.fixture(params=["memory", "redis"])
async def budget(request: pytest.FixtureRequest) -> AsyncIterator[EgressBudget]:
    prefix = f"test-egress-spend-{uuid.uuid4().hex}"
    if request.param == "memory":
        yield EgressBudget(MemorySpendStore(), key_prefix=prefix)
        return
    client = Redis.from_url(require_redis())
    store: SpendStore = RedisSpendStore(client)
    try:
        yield EgressBudget(store, key_prefix=prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _reserve(budget: EgressBudget, team: str = "research", **kw: Any) -> Any:
    provider = kw.pop("provider", _provider())
    now = kw.pop("now", NOW)
    return await budget.reserve(
        provider, team, prompt_tokens=kw.get("prompt", 100_000),
        max_completion_tokens=kw.get("completion", 25_000), now=now,
    )  # fmt: skip


@pytest.mark.anyio
async def test_reserve_settle_and_refuse_once_spent(budget: EgressBudget) -> None:
    provider = _provider()
    # Each reservation: 100k in x 2 + 25k out x 8 per million = 0.40 USD.
    first = await _reserve(budget)
    assert first.reserved == Decimal("0.4")
    second = await _reserve(budget)
    assert await budget.spent(provider, "research", now=NOW) == Decimal("0.8")
    with pytest.raises(RateLimited) as caught:
        await _reserve(budget)  # 0.80 + 0.40 > 1.00
    assert caught.value.code == "egress_budget_exceeded"
    assert "0.20 of 1.00 USD left" in caught.value.message
    assert caught.value.retry_after_s == int(
        (datetime(2027, 1, 1, tzinfo=UTC) - NOW).total_seconds()
    )
    # The refused request reserved nothing.
    assert await budget.spent(provider, "research", now=NOW) == Decimal("0.8")
    # Settled with actual usage: 100k in, 1k out = 0.208; the rest is refunded.
    assert await first.settle(100_000, 1_000, now=NOW) == Decimal("0.208")
    assert await first.settle(100_000, 25_000, now=NOW) is None  # idempotent
    assert await budget.spent(provider, "research", now=NOW) == Decimal("0.608")
    with pytest.raises(RateLimited):
        await _reserve(budget)  # 0.608 + 0.40 > 1.00
    small = await _reserve(budget, completion=0)  # 0.20 fits: 0.808
    await small.release(now=NOW)  # never sent: all of it back
    assert await budget.spent(provider, "research", now=NOW) == Decimal("0.608")
    # Usage unknown: the reservation stays spent.
    assert await second.settle(None, None, now=NOW) is None
    assert await budget.spent(provider, "research", now=NOW) == Decimal("0.608")


@pytest.mark.anyio
async def test_usage_above_the_estimate_is_charged(budget: EgressBudget) -> None:
    provider = _provider()
    lease = await _reserve(budget, prompt=1_000, completion=1_000)  # 0.01
    assert await lease.settle(300_000, 50_000, now=NOW) == Decimal("1.0")
    assert await budget.spent(provider, "research", now=NOW) == Decimal("1.0")
    with pytest.raises(RateLimited):
        await _reserve(budget, prompt=1, completion=0)  # 1.000002 > 1.00
    # Zero cost still fits an exactly spent budget.
    await _reserve(budget, prompt=0, completion=0)


@pytest.mark.anyio
async def test_teams_providers_and_months_are_apart(budget: EgressBudget) -> None:
    await _reserve(budget)  # research: 0.40 of 1.00
    with pytest.raises(RateLimited, match="team marketing's 2026-12 budget"):
        await _reserve(budget, "marketing")  # '*': 0.01
    await _reserve(budget, "marketing", prompt=5_000, completion=0)  # 0.01 exactly
    with pytest.raises(RateLimited):
        await _reserve(budget, "legal", prompt=0, completion=0)  # no budget at all
    other = _provider(name="azure", models=["gpt-4.1@azure"])
    assert await budget.spent(other, "research", now=NOW) == 0
    await _reserve(budget, provider=other)
    await _reserve(budget, provider=other)
    january = datetime(2027, 1, 1, tzinfo=UTC)
    assert await budget.spent(_provider(), "research", now=january) == 0
    await _reserve(budget, now=january)
    await _reserve(budget, now=january)
    assert await budget.spent(_provider(), "research", now=NOW) == Decimal("0.4")


@pytest.mark.anyio
async def test_memory_store_forgets_expired_months() -> None:
    budget = EgressBudget(MemorySpendStore())
    await _reserve(budget)
    later = datetime(2027, 2, 1, tzinfo=UTC)
    key = budget.key("openai", "research", budget_month(NOW))
    assert await budget.store.spent(key, now_s=later.timestamp() - 1) == 400_000
    assert await budget.store.spent(key, now_s=later.timestamp()) == 0


@pytest.mark.anyio
async def test_redis_keys_expire_after_the_following_month() -> None:
    client = Redis.from_url(require_redis())
    prefix = f"test-egress-spend-{uuid.uuid4().hex}"
    try:
        budget = EgressBudget(RedisSpendStore(client), key_prefix=prefix)
        lease = await _reserve(budget)
        key = f"{prefix}:openai:2026-12:research"
        expected = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
        assert await client.expiretime(key) == expected
        assert int(await client.get(key)) == 400_000
        await lease.settle(1, 1, now=NOW)
        assert await client.expiretime(key) == expected
        assert int(await client.get(key)) == 10
    finally:
        await client.delete(f"{prefix}:openai:2026-12:research")
        await client.aclose()
