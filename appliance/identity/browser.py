"""Browser sign-in against Keycloak: authorization code flow with PKCE (RFC 7636, S256),
``state`` bound to the browser, ``nonce`` checked in the ID token, server-side sessions,
refresh at access-token expiry, and RP-initiated logout (OpenID RP-Initiated Logout 1.0).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from appliance.config import OidcSettings
from appliance.identity.keycloak import KeycloakGateway
from appliance.identity.oidc import OidcVerifier
from appliance.identity.sessions import BrowserSession, PendingLogin, SessionStore, new_secret
from appliance.identity.tokens import InvalidToken, TokenRules

__all__ = ["BrowserSignIn", "SignInFailed", "pkce_challenge", "safe_next_path"]

logger = logging.getLogger("appliance.identity.browser")


class SignInFailed(Exception):
    """The callback cannot complete a sign-in; ``reason`` is safe to show."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def safe_next_path(value: str | None) -> str:
    """Only same-origin absolute paths: no open redirect through ``next``."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    # Browsers drop tabs/newlines and read "\\" as "/": "/\t/evil" would become "//evil".
    if "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    return value


class BrowserSignIn:
    def __init__(
        self,
        settings: OidcSettings,
        keycloak: KeycloakGateway,
        verifier: OidcVerifier,
        sessions: SessionStore,
    ):
        self.settings = settings
        self.keycloak = keycloak
        self.verifier = verifier
        self.sessions = sessions
        self.id_token_rules = TokenRules(
            issuer=verifier.rules.issuer,
            audiences=frozenset({settings.browser_client_id}),
            algorithms=verifier.rules.algorithms,
            leeway_s=verifier.rules.leeway_s,
            token_types=frozenset({"ID"}),
        )

    async def start(self, *, redirect_uri: str, next_path: str, now: float) -> tuple[str, str]:
        """The authorization URL to send the browser to, and the binding cookie value."""
        login = PendingLogin(
            state=new_secret(),
            nonce=new_secret(),
            code_verifier=new_secret() + new_secret(),  # 86 chars, within RFC 7636's 43-128
            redirect_uri=redirect_uri,
            next_path=safe_next_path(next_path),
            created_at=now,
            browser_binding=new_secret(),
        )
        self.sessions.begin_login(login)
        query = urlencode(
            {
                "client_id": self.settings.browser_client_id,
                "response_type": "code",
                "scope": self.settings.browser_scopes,
                "redirect_uri": redirect_uri,
                "state": login.state,
                "nonce": login.nonce,
                "code_challenge": pkce_challenge(login.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = await self.keycloak.endpoint("authorization_endpoint")
        return f"{endpoint}?{query}", login.browser_binding

    async def finish(
        self, *, state: str, code: str, binding: str | None, now: float
    ) -> tuple[str, BrowserSession, str]:
        """Exchange the code; returns (session id, session, next path)."""
        try:
            login = self.sessions.finish_login(state, binding, now=now)
        except LookupError as exc:
            raise SignInFailed(str(exc)) from exc
        try:
            tokens = await self.keycloak.exchange_code(
                code=code, redirect_uri=login.redirect_uri, code_verifier=login.code_verifier
            )
        except Exception as exc:
            logger.warning("code exchange failed: %s", exc)
            raise SignInFailed("the identity provider refused the sign-in") from exc
        session = await self._session_from_tokens(tokens, nonce=login.nonce, now=now)
        session_id, stored = self.sessions.create(
            session.principal,
            now=now,
            access_expires_at=session.access_expires_at,
            id_token=session.id_token,
            refresh_token=session.refresh_token,
        )
        return session_id, stored, login.next_path

    async def _session_from_tokens(
        self, tokens: dict[str, Any], *, nonce: str | None, now: float
    ) -> BrowserSession:
        id_token = tokens.get("id_token")
        try:
            if isinstance(id_token, str):
                id_claims = await self.verifier.verify_jwt(
                    id_token, now=now, rules=self.id_token_rules
                )
                if nonce is not None and id_claims.get("nonce") != nonce:
                    raise InvalidToken("ID token nonce does not match")
            elif nonce is not None:
                raise InvalidToken("no ID token in the answer")
            access = str(tokens["access_token"])
            claims = await self.verifier.claims(access, now=now)
        except InvalidToken as refused:
            raise SignInFailed(
                f"the sign-in produced an unacceptable token: {refused.reason}"
            ) from refused
        principal = self.verifier.principal_from(claims)
        refresh = tokens.get("refresh_token")
        return BrowserSession(
            principal=principal,
            csrf_token="",
            created_at=now,
            last_seen=now,
            expires_at=now,
            access_expires_at=float(claims["exp"]),
            id_token=id_token if isinstance(id_token, str) else None,
            refresh_token=refresh if isinstance(refresh, str) else None,
        )

    async def refresh(
        self, session_id: str, session: BrowserSession, *, now: float
    ) -> BrowserSession | None:
        """Renew the principal when its access token expired; None ends the session
        (no refresh token, SSO session ended in Keycloak, user disabled ...)."""
        if session.refresh_token is None:
            self.sessions.delete(session_id)
            return None
        try:
            tokens = await self.keycloak.refresh(session.refresh_token)
            fresh = await self._session_from_tokens(tokens, nonce=None, now=now)
        except Exception as exc:
            logger.info("session refresh failed, signing out: %s", exc)
            self.sessions.delete(session_id)
            return None
        renewed = replace(
            session,
            principal=fresh.principal,
            access_expires_at=fresh.access_expires_at,
            id_token=fresh.id_token or session.id_token,
            refresh_token=fresh.refresh_token or session.refresh_token,
        )
        self.sessions.update(session_id, renewed)
        return renewed

    async def logout_url(self, session: BrowserSession | None, *, post_logout_uri: str) -> str:
        """Keycloak's end-session endpoint for this session (RP-initiated logout)."""
        params = {
            "client_id": self.settings.browser_client_id,
            "post_logout_redirect_uri": post_logout_uri,
        }
        if session is not None and session.id_token:
            params["id_token_hint"] = session.id_token
        endpoint = await self.keycloak.endpoint("end_session_endpoint")
        return f"{endpoint}?{urlencode(params)}"
