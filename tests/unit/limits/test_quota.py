"""Token-bucket arithmetic: bursts, refill, clamping, settlement."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from appliance.limits.quota import Bucket, BucketRule, refill, settle, take, whole_seconds

RULE = BucketRule(60)  # one per second


def test_burst_up_to_capacity_then_refused_with_wait() -> None:
    bucket = None
    for _ in range(60):
        result = take(bucket, RULE, 1, now_s=100.0)
        assert result.allowed
        bucket = result.bucket
    refused = take(bucket, RULE, 1, now_s=100.0)
    assert not refused.allowed
    assert refused.retry_after_s == 1.0


def test_refill_is_linear_and_capped() -> None:
    empty = Bucket(0.0, 0.0)
    assert refill(empty, RULE, 30.0).level == 30.0
    assert refill(empty, RULE, 3600.0).level == 60.0
    # Time going backwards (clock skew between gateways) never drains the bucket.
    assert refill(Bucket(10.0, 50.0), RULE, 40.0) == Bucket(10.0, 50.0)


def test_reservation_clamped_to_capacity() -> None:
    result = take(None, BucketRule(1000), 4096, now_s=0.0)
    assert result.allowed and result.bucket.level == 0.0
    later = take(result.bucket, BucketRule(1000), 4096, now_s=30.0)
    assert not later.allowed and abs(later.retry_after_s - 30.0) < 1e-9


def test_settle_refunds_and_charges_debt() -> None:
    rule = BucketRule(600)  # 10 tokens per second
    reserved = take(None, rule, 500, now_s=0.0).bucket
    assert reserved.level == 100.0
    refunded = settle(reserved, rule, 500 - 120, now_s=0.0)  # used 120 of 500
    assert refunded.level == 480.0
    charged = settle(Bucket(0.0, 0.0), rule, -200, now_s=0.0)  # used 200 more than reserved
    assert charged.level == -200.0
    refused = take(charged, rule, 100, now_s=0.0)
    assert not refused.allowed and refused.retry_after_s == 30.0
    assert settle(None, rule, 1000, now_s=0.0).level == 600.0  # never above capacity


def test_whole_seconds() -> None:
    assert whole_seconds(0.0) == 1
    assert whole_seconds(1.0) == 1
    assert whole_seconds(1.01) == 2


@given(
    per_minute=st.integers(1, 100_000),
    takes=st.lists(st.tuples(st.floats(0, 120), st.integers(1, 5000)), max_size=40),
)
def test_never_grants_more_than_capacity_plus_refill(
    per_minute: int, takes: list[tuple[float, int]]
) -> None:
    rule = BucketRule(per_minute)
    bucket: Bucket | None = None
    now = 0.0
    granted = 0.0
    for step, amount in takes:
        now += step
        result = take(bucket, rule, amount, now)
        if result.allowed:
            granted += rule.clamp(amount)
        bucket = result.bucket
        assert bucket.level <= rule.capacity + 1e-9
    assert granted <= rule.capacity + now * rule.rate_per_s + 1e-6


def test_an_integer_past_a_doubles_range_clamps_instead_of_overflowing() -> None:
    rule = BucketRule(per_minute=1000)
    huge = 10**400  # float(huge) raises OverflowError
    assert rule.clamp(huge) == 1000.0
    assert take(None, rule, huge, now_s=0.0).allowed
