"""Opaque tokens: introspection answers are checked and cached briefly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.identity.introspection import IntrospectionCache, IntrospectionUnavailable
from appliance.identity.tokens import InvalidToken, TokenRules

ISS = "https://sso.example.test/realms/appliance"
RULES = TokenRules(issuer=ISS, audiences=frozenset({"appliance-gateway"}))


class Endpoint:
    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self, token: str) -> dict[str, Any]:
        self.calls += 1
        if self.answer is None:
            raise OSError("down")
        return dict(self.answer)


def active(**extra: Any) -> dict[str, Any]:
    return {"active": True, "iss": ISS, "aud": "appliance-gateway", "sub": "u", "exp": 1300,
            "typ": "Bearer", **extra}  # fmt: skip


def test_cached_for_cache_s_but_never_past_exp() -> None:
    endpoint = Endpoint(active())
    cache = IntrospectionCache(endpoint, RULES, cache_s=30)

    async def scenario() -> None:
        assert (await cache.claims("t", now=1000))["sub"] == "u"
        await cache.claims("t", now=1029)
        assert endpoint.calls == 1
        await cache.claims("t", now=1030)
        assert endpoint.calls == 2
        await cache.claims("t", now=1299)
        endpoint.answer = {"active": False}
        with pytest.raises(InvalidToken, match="not active"):
            await cache.claims("t", now=1300)  # exp reached: asked again

    asyncio.run(scenario())


def test_inactive_and_wrong_audience_are_refused_and_cached() -> None:
    endpoint = Endpoint({"active": False})
    cache = IntrospectionCache(endpoint, RULES, cache_s=30)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(InvalidToken, match="not active"):
                await cache.claims("t", now=1000)
        endpoint.answer = active(aud="other")
        with pytest.raises(InvalidToken, match="audience"):
            await cache.claims("u", now=1000)

    asyncio.run(scenario())
    assert endpoint.calls == 2


def test_client_credentials_without_sub_and_endpoint_down() -> None:
    endpoint = Endpoint({**active(client_id="svc"), "sub": None})
    cache = IntrospectionCache(endpoint, RULES, cache_s=30, max_entries=1)

    async def scenario() -> None:
        assert (await cache.claims("t", now=1000))["sub"] == "client:svc"
        endpoint.answer = None
        with pytest.raises(IntrospectionUnavailable):
            await cache.claims("other", now=1000)

    asyncio.run(scenario())
