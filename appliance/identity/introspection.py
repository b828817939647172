"""Opaque tokens: RFC 7662 introspection, cached briefly.

The answer for a token is kept for ``cache_s`` (never past the token's ``exp``), so a
chat session does not ask Keycloak on every request; a revoked token therefore keeps
working for at most ``cache_s``. Only a SHA-256 of the token is kept as the cache key.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from appliance.identity.tokens import InvalidToken, TokenRules, check_claims

__all__ = ["IntrospectionCache", "IntrospectionUnavailable"]

Introspect = Callable[[str], Awaitable[Mapping[str, Any]]]


class IntrospectionUnavailable(Exception):
    """The introspection endpoint could not be asked."""


class IntrospectionCache:
    def __init__(
        self,
        introspect: Introspect,
        rules: TokenRules,
        *,
        cache_s: float,
        max_entries: int = 10_000,
    ):
        self._introspect = introspect
        self._rules = rules
        self._cache_s = cache_s
        self._max_entries = max_entries
        # digest -> (valid until, claims or the refusal reason)
        self._entries: OrderedDict[bytes, tuple[float, dict[str, Any] | str]] = OrderedDict()
        self.calls = 0

    async def claims(self, token: str, *, now: float) -> dict[str, Any]:
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._entries.get(digest)
        if cached is not None and now < cached[0]:
            result = cached[1]
        else:
            result = await self._ask(token, now)
            expires = now + self._cache_s
            if isinstance(result, dict) and isinstance(result.get("exp"), int | float):
                expires = min(expires, float(result["exp"]))
            self._entries[digest] = (expires, result)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        if isinstance(result, str):
            raise InvalidToken(result)
        return result

    async def _ask(self, token: str, now: float) -> dict[str, Any] | str:
        self.calls += 1
        try:
            answer = dict(await self._introspect(token))
        except Exception as exc:
            raise IntrospectionUnavailable("token introspection failed") from exc
        if answer.get("active") is not True:
            return "token is not active"
        if not answer.get("sub") and isinstance(answer.get("client_id"), str):
            # RFC 7662 §2.2 makes sub optional; a client-credentials token without one
            # is the client's own (Keycloak always sends the service account's sub).
            answer["sub"] = f"client:{answer['client_id']}"
        try:
            check_claims(answer, self._rules, now)
        except InvalidToken as refused:
            return refused.reason
        return answer
