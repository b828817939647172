"""The realm's signing keys (JWKS), cached, refetched once on an unknown ``kid``.

Keycloak rotates keys by publishing a new active key beside the old (now passive)
one, then deleting the old one later. So: a token with a ``kid`` we do not know makes
us refetch the key set at once (rate-limited, so a flood of forged kids cannot turn
the gateway into a JWKS hammer); and the cached set is refreshed every ``max_age_s``,
which is how a removed key stops being accepted. Time is a parameter (``now``, in
seconds), so the cache is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from appliance.identity.tokens import InvalidToken

__all__ = ["JwksCache", "KeySetUnavailable", "SigningKey", "parse_jwks"]

logger = logging.getLogger("appliance.identity.jwks")

JwksFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


class KeySetUnavailable(Exception):
    """No key set could be fetched and none is cached: tokens cannot be checked now."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    kty: str
    alg: str | None  # the JWK's own "alg", when the realm publishes it
    key: Any = field(repr=False)  # a cryptography public key


def parse_jwks(document: Mapping[str, Any]) -> dict[str, SigningKey]:
    """Signature keys by kid. Encryption keys, keys without kid and key types we
    cannot use are skipped; private parts, if a careless server sent any, are dropped."""
    keys: dict[str, SigningKey] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or kty not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        key_ops = entry.get("key_ops")
        if isinstance(key_ops, list) and "verify" not in key_ops:
            continue
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = PyJWK(public).key
        except (PyJWTError, ValueError, TypeError) as exc:
            logger.warning("skipping unusable JWK %r: %s", kid, exc)
            continue
        alg = entry.get("alg")
        keys[kid] = SigningKey(kid=kid, kty=kty, alg=alg if isinstance(alg, str) else None, key=key)
    return keys


class JwksCache:
    """Keys by kid from ``fetch``; refreshed after ``max_age_s``, and at most once per
    ``min_refetch_interval_s`` when a token names a kid we do not have."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        max_age_s: float = 300.0,
        min_refetch_interval_s: float = 30.0,
    ):
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._min_interval_s = min_refetch_interval_s
        self._keys: dict[str, SigningKey] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # how often the network was asked (for tests and metrics)

    async def key(self, kid: str, *, now: float) -> SigningKey:
        keys = self._keys
        if keys is None or now - self._fetched_at >= self._max_age_s:
            keys = await self._refresh(now)
        found = keys.get(kid)
        if found is not None:
            return found
        if now - self._attempted_at >= self._min_interval_s:
            keys = await self._refresh(now)
            found = keys.get(kid)
            if found is not None:
                return found
        raise InvalidToken("token signing key is unknown")

    async def _refresh(self, now: float) -> dict[str, SigningKey]:
        started = self._fetched_at
        async with self._lock:
            if self._keys is not None and self._fetched_at != started:
                return self._keys  # another request refreshed while we waited
            if now - self._attempted_at < self._min_interval_s:
                if self._keys is None:
                    raise KeySetUnavailable("the identity provider's keys are unavailable")
                return self._keys
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = parse_jwks(await self._fetch())
            except Exception as exc:
                if self._keys is not None:
                    logger.warning("JWKS refresh failed, keeping the cached keys: %s", exc)
                    return self._keys
                raise KeySetUnavailable("the identity provider's keys are unavailable") from exc
            self._keys = keys
            self._fetched_at = now
            return keys
