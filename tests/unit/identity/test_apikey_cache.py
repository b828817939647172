"""The gateway's short-lived API-key cache: hits need no database, answers expire,
revocation through the cache is immediate, and the cache stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from appliance.identity.apikey_cache import ApiKeyCache, CacheMiss
from appliance.identity.apikeys import ApiKeyService, generate_api_key

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class CountingService(ApiKeyService):
    """The real service, counting how often it asks the database."""

    queries = 0

    def find(self, secret: str):  # type: ignore[no-untyped-def]
        self.queries += 1
        return super().find(secret)


@pytest.fixture
def service(migrated_engine: Engine) -> CountingService:
    return CountingService(migrated_engine, "pepper")


def make_cache(service: ApiKeyService, clock: Clock, **kw: object) -> ApiKeyCache:
    return ApiKeyCache(service, ttl_s=10.0, clock_s=clock, **kw)  # type: ignore[arg-type]


def user_key(service: ApiKeyService, expires_at: datetime | None = None) -> str:
    return service.create(
        name="t", owner="o", roles=["appliance-user"], models=None, now=NOW, expires_at=expires_at
    ).secret


def test_a_miss_asks_the_database_and_a_hit_does_not(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    secret = user_key(service)

    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)
    record = cache.authenticate(secret, now=NOW)
    assert record is not None and service.queries == 1

    hit = cache.lookup(secret, now=NOW)
    assert hit == record and service.queries == 1


def test_answers_expire_after_the_ttl(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    secret = user_key(service)
    cache.authenticate(secret, now=NOW)

    clock.now_s += 9.9
    assert not isinstance(cache.lookup(secret, now=NOW), CacheMiss)
    clock.now_s += 0.1
    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)


def test_unknown_keys_are_cached_as_refusals(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    wrong = generate_api_key()
    assert cache.authenticate(wrong, now=NOW) is None
    assert cache.lookup(wrong, now=NOW) is None  # a refusal, not a miss
    assert service.queries == 1


def test_revoking_through_the_cache_takes_effect_at_once(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    created = service.create(name="t", owner="o", roles=["r"], models=None, now=NOW)
    cache.authenticate(created.secret, now=NOW)

    assert cache.revoke(created.record.key_id, now=NOW) is True
    assert isinstance(cache.lookup(created.secret, now=NOW), CacheMiss)
    assert cache.authenticate(created.secret, now=NOW) is None


def test_a_revocation_elsewhere_is_seen_after_the_ttl(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    created = service.create(name="t", owner="o", roles=["r"], models=None, now=NOW)
    cache.authenticate(created.secret, now=NOW)
    service.revoke(created.record.key_id, now=NOW)  # another process

    assert cache.lookup(created.secret, now=NOW) is not None  # still cached
    clock.now_s += 10
    assert isinstance(cache.lookup(created.secret, now=NOW), CacheMiss)
    assert cache.authenticate(created.secret, now=NOW) is None


def test_expiry_is_checked_on_every_hit(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock)
    secret = user_key(service, expires_at=NOW + timedelta(seconds=5))
    assert cache.authenticate(secret, now=NOW) is not None
    assert cache.lookup(secret, now=NOW + timedelta(seconds=6)) is None


def test_ttl_zero_turns_the_cache_off(service: CountingService) -> None:
    cache = ApiKeyCache(service, ttl_s=0, clock_s=Clock())
    secret = user_key(service)
    assert cache.authenticate(secret, now=NOW) is not None
    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)


def test_the_cache_is_bounded_oldest_out_first(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock, max_entries=3)
    wrong = [generate_api_key() for _ in range(5)]
    for secret in wrong:
        cache.authenticate(secret, now=NOW)
    assert isinstance(cache.lookup(wrong[0], now=NOW), CacheMiss)
    assert isinstance(cache.lookup(wrong[1], now=NOW), CacheMiss)
    assert all(cache.lookup(secret, now=NOW) is None for secret in wrong[2:])
