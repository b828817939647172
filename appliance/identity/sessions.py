"""Browser sessions, kept server-side in memory.

The cookie carries only a random session id; the store keeps the principal, the CSRF
token and the tokens needed for refresh and RP-initiated logout, keyed by a SHA-256 of
the id (a memory dump does not hand out live cookies). Sessions live in the gateway
process: with several gateway replicas, route a browser to the same replica (sticky
sessions) until a shared store exists. Time is a parameter.

A session signed in with an API key is only as alive as the key: its
``access_expires_at`` is the next time the key must be looked up again (every
``auth.api_key_cache_s``), and a revoke through this process ends it at once
(:meth:`SessionStore.end_key_sessions`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from appliance.identity.principal import Principal

__all__ = ["BrowserSession", "PendingLogin", "SessionStore", "new_secret"]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class PendingLogin:
    """An authorization request in flight: what the callback must see again."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    next_path: str
    created_at: float
    # Random value also set as a cookie: the callback must come from the same browser.
    browser_binding: str = field(repr=False, default="")


@dataclass(frozen=True)
class BrowserSession:
    principal: Principal
    csrf_token: str = field(repr=False)
    created_at: float
    last_seen: float
    expires_at: float  # absolute end (session TTL)
    access_expires_at: float  # when the principal must be refreshed from Keycloak
    id_token: str | None = field(default=None, repr=False)  # id_token_hint for logout
    refresh_token: str | None = field(default=None, repr=False)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token.encode()
        )


class SessionStore:
    def __init__(
        self,
        *,
        ttl_s: float,
        idle_s: float,
        login_ttl_s: float = 600.0,
        max_sessions: int = 100_000,
    ):
        self._ttl_s = ttl_s
        self._idle_s = idle_s
        self._login_ttl_s = login_ttl_s
        self._max = max_sessions
        self._sessions: OrderedDict[bytes, BrowserSession] = OrderedDict()
        self._logins: OrderedDict[str, PendingLogin] = OrderedDict()

    # -- sign-in in flight -------------------------------------------------------------
    def begin_login(self, login: PendingLogin) -> None:
        self._logins[login.state] = login
        while len(self._logins) > self._max:
            self._logins.popitem(last=False)

    def finish_login(self, state: str, browser_binding: str | None, *, now: float) -> PendingLogin:
        """The pending login for ``state`` (single use), or LookupError."""
        login = self._logins.pop(state, None)
        if login is None or now - login.created_at > self._login_ttl_s:
            raise LookupError("unknown or expired sign-in attempt")
        if browser_binding is None or not hmac.compare_digest(
            browser_binding.encode(), login.browser_binding.encode()
        ):
            raise LookupError("sign-in attempt started in another browser")
        return login

    # -- sessions ----------------------------------------------------------------------
    def create(
        self,
        principal: Principal,
        *,
        now: float,
        access_expires_at: float,
        id_token: str | None = None,
        refresh_token: str | None = None,
        not_after: float | None = None,
    ) -> tuple[str, BrowserSession]:
        """A new session; ``not_after`` caps its life (an API key's own expiry)."""
        session_id = new_secret()
        expires_at = now + self._ttl_s
        session = BrowserSession(
            principal=principal,
            csrf_token=new_secret(),
            created_at=now,
            last_seen=now,
            expires_at=expires_at if not_after is None else min(expires_at, not_after),
            access_expires_at=access_expires_at,
            id_token=id_token,
            refresh_token=refresh_token,
        )
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str, *, now: float) -> BrowserSession | None:
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if now >= session.expires_at or now - session.last_seen >= self._idle_s:
            del self._sessions[key]
            return None
        session = replace(session, last_seen=now)
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        return session

    def update(self, session_id: str, session: BrowserSession) -> None:
        key = _digest(session_id)
        if key in self._sessions:
            self._sessions[key] = session

    def delete(self, session_id: str) -> BrowserSession | None:
        return self._sessions.pop(_digest(session_id), None)

    def end_key_sessions(self, key_id: str) -> int:
        """End every session signed in with the API key ``key_id`` (it was revoked);
        how many ended."""
        ended = [k for k, s in self._sessions.items() if s.principal.key_id == key_id]
        for key in ended:
            del self._sessions[key]
        return len(ended)

    def __len__(self) -> int:
        return len(self._sessions)
