"""Browser sessions in the database (tables ``browser_sessions`` and ``browser_logins``):
every gateway process sees the same sessions, a revoke in one ends them in all, and a
restart signs nobody out.

What a row could give away is sealed: the principal, the CSRF token, and Keycloak's ID
and refresh tokens are AES-256-GCM under a key derived (HKDF-SHA256) from the deployment
pepper, bound to the row's key, so a copy of the table alone yields no token and no
working cookie (the cookie's value is never stored, only its SHA-256).
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, delete, func, insert, select, update

from appliance.db.tables import browser_logins, browser_sessions
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.sessions import BrowserSession, PendingLogin

__all__ = ["SqlSessions", "session_sealing_key"]

_INFO = b"appliance/browser-sessions/v1"


def session_sealing_key(pepper: str) -> bytes:
    """The sessions' AES-256 key, derived from the deployment pepper (domain-separated
    from its use for API-key hashes)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(pepper.encode())


def _principal_to_json(principal: Principal) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "username": principal.username,
        "auth_method": principal.auth_method.value,
        "roles": sorted(principal.roles),
        "model_globs": None if principal.model_globs is None else list(principal.model_globs),
        "team": principal.team,
        "key_id": principal.key_id,
        "email": principal.email,
        "groups": sorted(principal.groups),
        "client_id": principal.client_id,
        "realm_roles": sorted(principal.realm_roles),
        "client_roles": sorted(principal.client_roles),
    }


def _principal_from_json(data: dict[str, Any]) -> Principal:
    globs = data["model_globs"]
    return Principal(
        subject=data["subject"],
        username=data["username"],
        auth_method=AuthMethod(data["auth_method"]),
        roles=frozenset(data["roles"]),
        model_globs=None if globs is None else tuple(globs),
        team=data["team"],
        key_id=data["key_id"],
        email=data["email"],
        groups=frozenset(data["groups"]),
        client_id=data["client_id"],
        realm_roles=frozenset(data["realm_roles"]),
        client_roles=frozenset(data["client_roles"]),
    )


class SqlSessions:
    """A :class:`~appliance.identity.sessions.SessionBackend` on the database. Each call
    is one short statement on an indexed key (browser requests only, never the API)."""

    def __init__(self, engine: Engine, sealing_key: bytes):
        self._engine = engine
        self._aead = AESGCM(sealing_key)

    def _seal(self, value: dict[str, Any], bound_to: bytes) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps(value, separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, plain, bound_to)

    def _open(self, sealed: bytes, bound_to: bytes) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._aead.decrypt(sealed[:12], sealed[12:], bound_to))
        return value

    # -- sessions ----------------------------------------------------------------------
    def put(self, key: bytes, session: BrowserSession) -> None:
        secret = {
            "principal": _principal_to_json(session.principal),
            "csrf_token": session.csrf_token,
            "id_token": session.id_token,
            "refresh_token": session.refresh_token,
        }
        row = {
            "key_id": session.principal.key_id,
            "created_at": session.created_at,
            "last_seen": session.last_seen,
            "expires_at": session.expires_at,
            "access_expires_at": session.access_expires_at,
            "sealed": self._seal(secret, key),
        }
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(browser_sessions).where(browser_sessions.c.session_digest == key), row
            ).rowcount
            if not changed:
                connection.execute(insert(browser_sessions), {"session_digest": key, **row})

    def get(self, key: bytes) -> BrowserSession | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(browser_sessions).where(browser_sessions.c.session_digest == key)
            ).first()
        if row is None:
            return None
        try:
            secret = self._open(row.sealed, key)
        except InvalidTag:  # sealed under another pepper (rotated): signed out, not a 500
            return None
        return BrowserSession(
            principal=_principal_from_json(secret["principal"]),
            csrf_token=secret["csrf_token"],
            created_at=row.created_at,
            last_seen=row.last_seen,
            expires_at=row.expires_at,
            access_expires_at=row.access_expires_at,
            id_token=secret["id_token"],
            refresh_token=secret["refresh_token"],
        )

    def touch(self, key: bytes, last_seen: float) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(browser_sessions)
                .where(browser_sessions.c.session_digest == key)
                .values(last_seen=last_seen)
            )

    def delete(self, key: bytes) -> BrowserSession | None:
        session = self.get(key)
        if session is not None:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(browser_sessions).where(browser_sessions.c.session_digest == key)
                )
        return session

    def delete_key_sessions(self, key_id: str) -> int:
        with self._engine.begin() as connection:
            return int(
                connection.execute(
                    delete(browser_sessions).where(browser_sessions.c.key_id == key_id)
                ).rowcount
            )

    def count(self) -> int:
        with self._engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(browser_sessions)).scalar_one()
            )

    def expire(self, now: float) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(browser_sessions).where(browser_sessions.c.expires_at <= now))

    # -- sign-ins in flight ------------------------------------------------------------
    def put_login(self, login: PendingLogin) -> None:
        secret = {
            "nonce": login.nonce,
            "code_verifier": login.code_verifier,
            "redirect_uri": login.redirect_uri,
            "next_path": login.next_path,
            "browser_binding": login.browser_binding,
        }
        with self._engine.begin() as connection:
            connection.execute(
                insert(browser_logins),
                {
                    "state": login.state,
                    "created_at": login.created_at,
                    "sealed": self._seal(secret, login.state.encode()),
                },
            )

    def pop_login(self, state: str) -> PendingLogin | None:
        """Single use even with several processes: only the one whose DELETE removed
        the row gets the login."""
        with self._engine.begin() as connection:
            row = connection.execute(
                select(browser_logins).where(browser_logins.c.state == state)
            ).first()
            if row is None:
                return None
            removed = connection.execute(
                delete(browser_logins).where(browser_logins.c.state == state)
            ).rowcount
        if not removed:
            return None
        try:
            secret = self._open(row.sealed, state.encode())
        except InvalidTag:
            return None
        return PendingLogin(state=state, created_at=row.created_at, **secret)

    def expire_logins(self, before: float) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(browser_logins).where(browser_logins.c.created_at < before))
