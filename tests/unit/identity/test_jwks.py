"""The JWKS cache: one fetch when warm, one rate-limited refetch on an unknown kid,
refresh after max age, stale keys kept when the provider is down."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from appliance.identity.jwks import JwksCache, KeySetUnavailable, parse_jwks
from appliance.identity.tokens import InvalidToken


def rsa_jwk(kid: str, **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, **extra}


KEY_A, KEY_B = rsa_jwk("a", alg="RS256", use="sig"), rsa_jwk("b")


class FakeRealm:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [KEY_A]
        self.down = False
        self.calls = 0

    async def fetch(self) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise OSError("connection refused")
        return {"keys": list(self.keys)}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_parse_skips_encryption_unknown_and_kidless_keys_and_drops_private_parts() -> None:
    private = json.loads(
        RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    )
    private.pop("key_ops")
    ec_key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    keys = parse_jwks(
        {
            "keys": [
                KEY_A,
                {**KEY_B, "use": "enc"},
                {**KEY_B, "kid": "sign-only", "key_ops": ["sign"]},
                {**KEY_B, "kid": None},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {**private, "kid": "leaked"},
                {**ec_key, "kid": "ec"},
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                "junk",
            ]
        }
    )
    assert sorted(keys) == ["a", "ec", "leaked"]
    assert keys["a"].alg == "RS256" and keys["a"].kty == "RSA"
    assert isinstance(keys["leaked"].key, rsa.RSAPublicKey)
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})


def test_warm_cache_does_not_fetch_again() -> None:
    realm = FakeRealm()
    cache = JwksCache(realm.fetch, max_age_s=300, min_refetch_interval_s=30)

    async def scenario() -> None:
        for second in range(100):
            assert (await cache.key("a", now=1000.0 + second)).kid == "a"

    run(scenario())
    assert realm.calls == 1


def test_unknown_kid_refetches_once_then_rate_limits() -> None:
    realm = FakeRealm()
    cache = JwksCache(realm.fetch, max_age_s=300, min_refetch_interval_s=30)

    async def scenario() -> None:
        await cache.key("a", now=0.0)
        realm.keys = [KEY_B, KEY_A]
        with pytest.raises(InvalidToken, match="unknown"):
            await cache.key("b", now=10.0)  # within the interval of the first fetch
        assert (await cache.key("b", now=31.0)).kid == "b"  # one refetch
        for second in range(20):
            with pytest.raises(InvalidToken):
                await cache.key(f"forged-{second}", now=32.0 + second)

    run(scenario())
    assert realm.calls == 2


def test_removed_key_stops_after_max_age() -> None:
    realm = FakeRealm()
    realm.keys = [KEY_A, KEY_B]
    cache = JwksCache(realm.fetch, max_age_s=60, min_refetch_interval_s=30)

    async def scenario() -> None:
        await cache.key("a", now=0.0)
        realm.keys = [KEY_B]
        assert (await cache.key("a", now=59.0)).kid == "a"
        with pytest.raises(InvalidToken):
            await cache.key("a", now=60.0)

    run(scenario())


def test_provider_down_keeps_cached_keys_and_reports_unavailable_when_none() -> None:
    realm = FakeRealm()
    cache = JwksCache(realm.fetch, max_age_s=60, min_refetch_interval_s=30)

    async def scenario() -> None:
        await cache.key("a", now=0.0)
        realm.down = True
        assert (await cache.key("a", now=100.0)).kid == "a"  # stale but usable
        assert (await cache.key("a", now=110.0)).kid == "a"  # no retry within 30 s
        cold = JwksCache(realm.fetch, max_age_s=60, min_refetch_interval_s=30)
        with pytest.raises(KeySetUnavailable):
            await cold.key("a", now=0.0)
        with pytest.raises(KeySetUnavailable):
            await cold.key("a", now=1.0)

    run(scenario())
    assert realm.calls == 3  # first fetch, one retry at 100 s, one for the cold cache


def test_concurrent_misses_share_one_fetch() -> None:
    realm = FakeRealm()
    cache = JwksCache(realm.fetch, max_age_s=300, min_refetch_interval_s=0)

    async def scenario() -> None:
        await asyncio.gather(*(cache.key("a", now=0.0) for _ in range(20)))

    run(scenario())
    assert realm.calls == 1
