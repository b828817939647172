"""Where the Redis for limit tests is: APPLIANCE_TEST_REDIS_URL, else the local default.
Tests skip with the reason when none answers, or fail when APPLIANCE_TEST_REQUIRE_REDIS=1
(CI, where this machine runs Redis)."""

from __future__ import annotations

import os

import pytest
import redis

REDIS_URL_ENV = "APPLIANCE_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "APPLIANCE_TEST_REQUIRE_REDIS"


def test_redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or "redis://127.0.0.1:6379/0"


test_redis_url.__test__ = False  # type: ignore[attr-defined]  # not a test


def require_redis() -> str:
    """The Redis URL, or skip (fail under APPLIANCE_TEST_REQUIRE_REDIS=1) without one."""
    url = test_redis_url()
    try:
        if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
            return url
        reason = f"Redis at {url} did not answer PING"
    except redis.RedisError as exc:
        reason = f"no Redis at {url} ({type(exc).__name__}); set {REDIS_URL_ENV}"
    if os.environ.get(REQUIRE_REDIS_ENV) == "1":
        pytest.fail(f"{REQUIRE_REDIS_ENV}=1 but {reason}")
    pytest.skip(reason)
