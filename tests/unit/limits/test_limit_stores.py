"""The memory and Redis stores: all-or-nothing admission, slots, settlement, and the
Redis Lua scripts agreeing with the pure admission the memory store applies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from appliance.limits.quota import BucketRule
from appliance.limits.redis_store import RedisLimitStore
from appliance.limits.store import BucketCharge, LimitStore, MemoryLimitStore, SlotClaim
from tests.support.redis import require_redis


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[LimitStore, str]]:
    prefix = f"test-limits-{uuid.uuid4().hex}"
    if request.param == "memory":
        yield MemoryLimitStore(), prefix
        return
    client = Redis.from_url(require_redis())
    try:
        yield RedisLimitStore(client), prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _charge(prefix: str, name: str, per_minute: int, amount: float) -> BucketCharge:
    return BucketCharge(f"{prefix}:{name}", BucketRule(per_minute), amount)


@pytest.mark.anyio
async def test_all_or_nothing(store: tuple[LimitStore, str]) -> None:
    limits, prefix = store
    rpm = _charge(prefix, "rpm", 60, 1)
    tpm = _charge(prefix, "tpm", 600, 600)
    assert await limits.acquire([rpm, tpm], [], lease_id="a", now_s=0.0, lease_ttl_s=60) is None
    refusal = await limits.acquire([rpm, tpm], [], lease_id="b", now_s=1.0, lease_ttl_s=60)
    assert refusal is not None and refusal.index == 1
    assert refusal.retry_after_s == pytest.approx(59.0)
    # The refused request took no request from the rpm bucket: 59 left at t=1 (+1 refill).
    for _ in range(60):
        assert await limits.acquire([rpm], [], lease_id="c", now_s=1.0, lease_ttl_s=60) is None
    refusal = await limits.acquire([rpm], [], lease_id="d", now_s=1.0, lease_ttl_s=60)
    assert refusal is not None and refusal.index == 0


@pytest.mark.anyio
async def test_settlement_refunds_and_charges(store: tuple[LimitStore, str]) -> None:
    limits, prefix = store
    tpm = _charge(prefix, "tpm", 600, 600)
    assert await limits.acquire([tpm], [], lease_id="a", now_s=0.0, lease_ttl_s=60) is None
    await limits.release([_charge(prefix, "tpm", 600, 600 - 100)], [], lease_id="a", now_s=0.0)
    # 500 back: a 500-token reservation fits, a further 1 does not.
    assert (
        await limits.acquire(
            [_charge(prefix, "tpm", 600, 500)], [], lease_id="b", now_s=0.0, lease_ttl_s=60
        )
        is None
    )
    # Used 300 more than reserved: a debt that takes 30 s + to refill.
    await limits.release([_charge(prefix, "tpm", 600, -300)], [], lease_id="b", now_s=0.0)
    refusal = await limits.acquire(
        [_charge(prefix, "tpm", 600, 10)], [], lease_id="c", now_s=0.0, lease_ttl_s=60
    )
    assert refusal is not None and refusal.retry_after_s == pytest.approx(31.0)


@pytest.mark.anyio
async def test_concurrency_slots_release_and_expire(store: tuple[LimitStore, str]) -> None:
    limits, prefix = store
    slot = SlotClaim(f"{prefix}:inflight", 2)
    assert await limits.acquire([], [slot], lease_id="a", now_s=0.0, lease_ttl_s=10) is None
    assert await limits.acquire([], [slot], lease_id="b", now_s=0.0, lease_ttl_s=10) is None
    refusal = await limits.acquire([], [slot], lease_id="c", now_s=0.0, lease_ttl_s=10)
    assert refusal is not None and refusal.index == 0
    await limits.release([], [slot], lease_id="a", now_s=1.0)
    assert await limits.acquire([], [slot], lease_id="c", now_s=1.0, lease_ttl_s=10) is None
    assert await limits.acquire([], [slot], lease_id="d", now_s=2.0, lease_ttl_s=10) is not None
    # "b" was never released (its gateway died): it expires after the lease TTL.
    assert await limits.acquire([], [slot], lease_id="d", now_s=10.5, lease_ttl_s=10) is None


# -- the two stores agree -------------------------------------------------------------
# Rules whose rates (1, 2, 10 and 0.5 per second) and times (half seconds) are exact in
# binary floating point, so both stores must give the very same answers.
_RULES = [BucketRule(60), BucketRule(120), BucketRule(600), BucketRule(30)]
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release"]),
        st.integers(0, 6),  # half seconds to wait first
        st.lists(st.tuples(st.integers(0, 3), st.integers(-40, 80)), max_size=3),
        st.lists(st.integers(0, 1), max_size=2, unique=True),
    ),
    min_size=1,
    max_size=25,
)


async def _replay(store: LimitStore, prefix: str, ops: list) -> list[object]:  # type: ignore[type-arg]
    answers: list[object] = []
    now, leases = 1000.0, 0
    for op, wait, charges, slots in ops:
        now += wait / 2
        claims = [SlotClaim(f"{prefix}:slot{s}", 1 + s) for s in slots]
        if op == "acquire":
            leases += 1
            bucket_charges = [
                BucketCharge(f"{prefix}:b{rule}", _RULES[rule], _RULES[rule].clamp(abs(amount)))
                for rule, amount in charges
            ]
            refusal = await store.acquire(
                bucket_charges, claims, lease_id=f"l{leases}", now_s=now, lease_ttl_s=5.0
            )
            answers.append(
                None if refusal is None else (refusal.index, round(refusal.retry_after_s, 9))
            )
        else:
            adjustments = [
                BucketCharge(f"{prefix}:b{rule}", _RULES[rule], float(amount))
                for rule, amount in charges
            ]
            await store.release(adjustments, claims, lease_id=f"l{max(leases, 1)}", now_s=now)
            answers.append("released")
    # Then every bucket is probed for what it holds: a full-size charge's wait.
    for rule in range(len(_RULES)):
        probe = BucketCharge(f"{prefix}:b{rule}", _RULES[rule], _RULES[rule].capacity)
        refusal = await store.acquire([probe], [], lease_id="probe", now_s=now, lease_ttl_s=5.0)
        answers.append(None if refusal is None else round(refusal.retry_after_s, 9))
    return answers


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_memory_and_redis_stores_give_the_same_answers(redis_url: str, ops) -> None:
    async def run() -> tuple[list[object], list[object]]:
        prefix = f"test-limits-{uuid.uuid4().hex}"
        client = Redis.from_url(redis_url)
        try:
            in_redis = await _replay(RedisLimitStore(client), prefix, ops)
        finally:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        return await _replay(MemoryLimitStore(), prefix, ops), in_redis

    in_memory, in_redis = asyncio.run(run())
    assert in_memory == in_redis
