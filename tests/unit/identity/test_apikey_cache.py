"""The gateway's short-lived API-key cache: hits need no database, answers expire,
revocation through the cache is immediate, a revocation in another process (another
gateway worker) is seen within the version-check interval, and the cache stays
bounded."""

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
    version_reads = 0

    def find(self, secret: str):  # type: ignore[no-untyped-def]
        self.queries += 1
        return super().find(secret)

    def revocations(self) -> int:
        self.version_reads += 1
        return super().revocations()


@pytest.fixture
def service(migrated_engine: Engine) -> CountingService:
    return CountingService(migrated_engine, "pepper")


def make_cache(service: ApiKeyService, clock: Clock, **kw: object) -> ApiKeyCache:
    """By default the version check is out of the way (an hour), so a test sees the TTL
    alone; the revocation-version tests pass their own interval."""
    kw.setdefault("version_check_s", 3600.0)
    kw.setdefault("sleep_s", lambda _s: None)
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


def test_a_revocation_elsewhere_is_seen_after_the_version_check(
    service: CountingService,
) -> None:
    clock = Clock()
    cache = make_cache(service, clock, version_check_s=0.1)
    created = service.create(name="t", owner="o", roles=["r"], models=None, now=NOW)
    assert cache.authenticate(created.secret, now=NOW) is not None
    service.revoke(created.record.key_id, now=NOW)  # another gateway worker

    clock.now_s += 0.05
    assert cache.lookup(created.secret, now=NOW) is not None  # within the interval
    clock.now_s += 0.06
    assert isinstance(cache.lookup(created.secret, now=NOW), CacheMiss)  # version due
    assert cache.authenticate(created.secret, now=NOW) is None
    assert cache.lookup(created.secret, now=NOW) is None  # the refusal is cached


def test_the_version_is_read_at_most_once_per_interval(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock, version_check_s=0.1)
    secret = user_key(service)
    cache.authenticate(secret, now=NOW)
    assert service.version_reads == 1
    for _ in range(50):
        clock.now_s += 0.001
        assert cache.lookup(secret, now=NOW) is not None
    assert service.version_reads == 1 and service.queries == 1
    clock.now_s += 0.1
    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)
    cache.authenticate(secret, now=NOW)
    assert service.version_reads == 2


def test_an_unmoved_version_keeps_the_entries(service: CountingService) -> None:
    clock = Clock()
    cache = make_cache(service, clock, version_check_s=0.1)
    secret, other = user_key(service), user_key(service)
    cache.authenticate(secret, now=NOW)
    clock.now_s += 0.2
    cache.check_revocations()
    assert cache.lookup(secret, now=NOW) is not None
    assert isinstance(cache.lookup(other, now=NOW), CacheMiss)


def test_a_due_version_check_that_finds_no_change_reads_no_key(
    service: CountingService,
) -> None:
    clock = Clock()
    cache = make_cache(service, clock, version_check_s=0.1)
    secret, refused = user_key(service), "sk-appl-not-a-key"
    record = cache.authenticate(secret, now=NOW)
    assert cache.authenticate(refused, now=NOW) is None
    assert service.queries == 2
    clock.now_s += 0.2
    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)  # version due
    assert cache.authenticate(secret, now=NOW) == record
    assert service.version_reads == 2 and service.queries == 2  # the entry served
    clock.now_s += 0.2
    assert cache.authenticate(refused, now=NOW) is None
    assert service.version_reads == 3 and service.queries == 2  # so did the refusal
    clock.now_s += 10  # past the TTL: the key is read again
    assert cache.authenticate(secret, now=NOW) == record
    assert service.queries == 3


def test_an_entry_fetched_under_an_older_version_is_a_miss(migrated_engine: Engine) -> None:
    """A lookup that raced a revocation (its row read before the revoke committed, and
    stored after another thread read the newer version) is not trusted."""
    clock = Clock()
    cache: ApiKeyCache

    class RacingService(ApiKeyService):
        def find(self, secret: str):  # type: ignore[no-untyped-def]
            row = super().find(secret)
            if row is not None and row.revoked_at is None:
                self.revoke(row.key_id, now=NOW)  # committed after the row was read
                cache.check_revocations()  # another request thread reads the version
            return row

    service = RacingService(migrated_engine, "pepper")
    cache = make_cache(service, clock, version_check_s=0.1)
    secret = user_key(service)
    assert cache.authenticate(secret, now=NOW) is not None  # the raced, stale answer
    assert isinstance(cache.lookup(secret, now=NOW), CacheMiss)
    assert cache.authenticate(secret, now=NOW) is None


def test_revoking_through_the_cache_waits_out_the_interval(service: CountingService) -> None:
    slept: list[float] = []
    cache = make_cache(service, Clock(), version_check_s=0.1, sleep_s=slept.append)
    created = service.create(name="t", owner="o", roles=["r"], models=None, now=NOW)
    assert cache.revoke(created.record.key_id, now=NOW) is True
    assert slept == [0.1]  # every other process has read the version when this returns
    assert cache.revoke(created.record.key_id, now=NOW) is False
    assert slept == [0.1]
