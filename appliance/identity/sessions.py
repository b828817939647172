"""Browser sessions, kept server-side.

The cookie carries only a random session id; the store keeps the principal, the CSRF
token and the tokens needed for refresh and RP-initiated logout, keyed by a SHA-256 of
the id (a dump of the store does not hand out live cookies). :class:`SessionStore` holds
the rules (lifetimes, single-use sign-ins); a :class:`SessionBackend` holds the rows: in
this process's memory (:class:`MemorySessions`, tests) or in the database
(:mod:`appliance.identity.session_sql`, what the gateway uses), where every gateway
process sees the same sessions and a restart signs nobody out. Time is a parameter.

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
from typing import Protocol

from appliance.identity.principal import Principal

__all__ = [
    "BrowserSession",
    "MemorySessions",
    "PendingLogin",
    "SessionBackend",
    "SessionStore",
    "new_secret",
    "session_digest",
]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def session_digest(session_id: str) -> bytes:
    """What a session is stored under: never the cookie's value itself."""
    return hashlib.sha256(session_id.encode()).digest()


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


class SessionBackend(Protocol):
    """Where sessions and sign-ins in flight are kept; no rules here."""

    def put(self, key: bytes, session: BrowserSession) -> None: ...
    def get(self, key: bytes) -> BrowserSession | None: ...
    def touch(self, key: bytes, last_seen: float) -> None: ...
    def delete(self, key: bytes) -> BrowserSession | None: ...
    def delete_key_sessions(self, key_id: str) -> int: ...
    def count(self) -> int: ...
    def expire(self, now: float) -> None: ...
    def put_login(self, login: PendingLogin) -> None: ...
    def pop_login(self, state: str) -> PendingLogin | None: ...
    def expire_logins(self, before: float) -> None: ...


class MemorySessions:
    """Sessions in this process's memory, bounded (oldest first out)."""

    def __init__(self, max_sessions: int = 100_000):
        self._max = max_sessions
        self._sessions: OrderedDict[bytes, BrowserSession] = OrderedDict()
        self._logins: OrderedDict[str, PendingLogin] = OrderedDict()

    def put(self, key: bytes, session: BrowserSession) -> None:
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)

    def get(self, key: bytes) -> BrowserSession | None:
        return self._sessions.get(key)

    def touch(self, key: bytes, last_seen: float) -> None:
        session = self._sessions.get(key)
        if session is not None:
            self.put(key, replace(session, last_seen=last_seen))

    def delete(self, key: bytes) -> BrowserSession | None:
        return self._sessions.pop(key, None)

    def delete_key_sessions(self, key_id: str) -> int:
        ended = [k for k, s in self._sessions.items() if s.principal.key_id == key_id]
        for key in ended:
            del self._sessions[key]
        return len(ended)

    def count(self) -> int:
        return len(self._sessions)

    def expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[key]

    def put_login(self, login: PendingLogin) -> None:
        self._logins[login.state] = login
        while len(self._logins) > self._max:
            self._logins.popitem(last=False)

    def pop_login(self, state: str) -> PendingLogin | None:
        return self._logins.pop(state, None)

    def expire_logins(self, before: float) -> None:
        for state in [s for s, login in self._logins.items() if login.created_at < before]:
            del self._logins[state]


class SessionStore:
    """The rules: absolute and idle lifetimes, single-use sign-ins bound to the browser
    that started them. ``last_seen`` is written at most every tenth of the idle time,
    so a busy browser does not write on every request."""

    def __init__(
        self,
        *,
        ttl_s: float,
        idle_s: float,
        login_ttl_s: float = 600.0,
        backend: SessionBackend | None = None,
    ):
        self._ttl_s = ttl_s
        self._idle_s = idle_s
        self._touch_s = idle_s / 10
        self._login_ttl_s = login_ttl_s
        self._backend: SessionBackend = backend if backend is not None else MemorySessions()

    # -- sign-in in flight -------------------------------------------------------------
    def begin_login(self, login: PendingLogin) -> None:
        self._backend.expire_logins(login.created_at - self._login_ttl_s)
        self._backend.put_login(login)

    def finish_login(self, state: str, browser_binding: str | None, *, now: float) -> PendingLogin:
        """The pending login for ``state`` (single use), or LookupError."""
        login = self._backend.pop_login(state)
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
        self._backend.expire(now)  # sign-ins are rare: sweep the dead ones then
        self._backend.put(session_digest(session_id), session)
        return session_id, session

    def get(self, session_id: str, *, now: float) -> BrowserSession | None:
        key = session_digest(session_id)
        session = self._backend.get(key)
        if session is None:
            return None
        if now >= session.expires_at or now - session.last_seen >= self._idle_s:
            self._backend.delete(key)
            return None
        if now - session.last_seen >= self._touch_s:
            self._backend.touch(key, now)
            session = replace(session, last_seen=now)
        return session

    def update(self, session_id: str, session: BrowserSession) -> None:
        key = session_digest(session_id)
        if self._backend.get(key) is not None:
            self._backend.put(key, session)

    def delete(self, session_id: str) -> BrowserSession | None:
        return self._backend.delete(session_digest(session_id))

    def end_key_sessions(self, key_id: str) -> int:
        """End every session signed in with the API key ``key_id`` (it was revoked);
        how many ended."""
        return self._backend.delete_key_sessions(key_id)

    def __len__(self) -> int:
        return self._backend.count()
