"""FastAPI dependencies: services, the calling principal, role checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from appliance.audit.store import SqlAuditStore
from appliance.errors import AuthenticationFailed, ModelNotFound, PermissionDenied
from appliance.gateway.context import RequestContext, request_context
from appliance.gateway.services import GatewayServices
from appliance.identity.apikey_cache import CacheMiss
from appliance.identity.apikeys import API_KEY_PREFIX, ApiKeyRecord
from appliance.identity.browser import BrowserSignIn
from appliance.identity.oidc import IdentityUnavailable
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.sessions import BrowserSession

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AuditDep",
    "ContextDep",
    "PrincipalDep",
    "ServicesDep",
    "SignInDep",
    "browser_session",
    "current_principal",
    "get_audit_store",
    "get_services",
    "get_signin",
    "require_role",
]


async def get_services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


ServicesDep = Annotated[GatewayServices, Depends(get_services)]


async def _context(request: Request) -> RequestContext:
    # Every dependency here is async: FastAPI runs plain ``def`` dependencies in a
    # worker thread, two thread hops per request for nothing.
    return request_context(request)


ContextDep = Annotated[RequestContext, Depends(_context)]


SESSION_COOKIE = "appliance_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_signin(services: ServicesDep) -> BrowserSignIn:
    return signin_for(services)


def signin_for(services: GatewayServices) -> BrowserSignIn:
    """Browser sign-in, when Keycloak is configured (404 otherwise)."""
    if services.identity is None or services.keycloak is None or services.sessions is None:
        raise ModelNotFound("no such route", code="not_found")
    return BrowserSignIn(
        services.settings.oidc, services.keycloak, services.identity, services.sessions
    )


SignInDep = Annotated[BrowserSignIn, Depends(get_signin)]


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "missing credentials: send 'Authorization: Bearer <API key or access token>'",
            code="missing_api_key",
        )
    return token.strip()


async def browser_session(
    request: Request, services: GatewayServices
) -> tuple[str, BrowserSession] | None:
    """The browser's live session (renewed from Keycloak once its access token
    expired), or None."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or services.sessions is None:
        return None
    now = services.clock().timestamp()
    session = services.sessions.get(session_id, now=now)
    if session is not None and now >= session.access_expires_at:
        if session.principal.auth_method is AuthMethod.API_KEY:
            session = await _recheck_key_session(services, session_id, session, now=now)
        else:
            session = await signin_for(services).refresh(session_id, session, now=now)
    return None if session is None else (session_id, session)


async def _recheck_key_session(
    services: GatewayServices, session_id: str, session: BrowserSession, *, now: float
) -> BrowserSession | None:
    """A session signed in with an API key lives only as long as the key: look the key
    up again (by id: the session never holds the secret); revoked, expired or gone
    ends the session."""
    assert services.sessions is not None and session.principal.key_id is not None
    key_id = session.principal.key_id
    try:
        record = await anyio.to_thread.run_sync(lambda: services.api_keys.get(key_id))
    except SQLAlchemyError as exc:
        raise IdentityUnavailable("API keys cannot be checked right now") from exc
    if record is None or not record.is_active(services.clock()):
        services.sessions.delete(session_id)
        return None
    renewed = replace(session, access_expires_at=now + services.settings.auth.api_key_cache_s)
    services.sessions.update(session_id, renewed)
    return renewed


async def _session_principal(request: Request, services: GatewayServices) -> Principal | None:
    """The browser session's principal; unsafe methods must echo the CSRF token."""
    found = await browser_session(request, services)
    if found is None:
        return None
    session = found[1]
    # Known from here on: a refusal below is recorded with the session's user.
    request_context(request).principal = session.principal
    if request.method not in _SAFE_METHODS and not session.csrf_matches(
        request.headers.get(CSRF_HEADER)
    ):
        raise PermissionDenied(
            f"missing or wrong CSRF token: send the session's token in {CSRF_HEADER}",
            code="csrf_failed",
        )
    return session.principal


async def _api_key(services: GatewayServices, secret: str) -> ApiKeyRecord | None:
    """The active key for ``secret``: from the short-lived cache when it knows, else
    from the database in a worker thread."""
    now = services.clock()
    cache = services.api_key_cache
    if cache is not None:
        cached = cache.lookup(secret, now=now)
        if not isinstance(cached, CacheMiss):
            return cached
    lookup = cache.authenticate if cache is not None else services.api_keys.authenticate
    try:
        return await anyio.to_thread.run_sync(lambda: lookup(secret, now=now))
    except SQLAlchemyError as exc:  # the database is down: not the caller's fault
        raise IdentityUnavailable("API keys cannot be checked right now") from exc


async def current_principal(
    request: Request, services: ServicesDep, context: ContextDep
) -> Principal:
    """Who is calling: an API key (``sk-appl-...``), a Keycloak access token (when
    ``oidc.enabled``), or a browser session cookie."""
    token = _bearer_token(request)
    if token is None:
        principal = await _session_principal(request, services)
        if principal is None:
            raise AuthenticationFailed(
                "missing credentials: send 'Authorization: Bearer <API key or access token>'",
                code="missing_api_key",
            )
    elif services.identity is not None and not token.startswith(API_KEY_PREFIX):
        principal = await services.identity.principal(token, now=services.clock().timestamp())
    else:
        record = await _api_key(services, token)
        if record is None:
            raise AuthenticationFailed("invalid, revoked or expired API key")
        principal = record.principal()
    context.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str) -> Any:
    """A dependency that lets the request through only if the principal holds one of
    ``roles``: ``Annotated[Principal, require_role("appliance-auditor")]``."""
    wanted = frozenset(roles)

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.roles & wanted:
            raise PermissionDenied(
                f"this needs the role {' or '.join(sorted(wanted))}", code="role_required"
            )
        return principal

    return Depends(check)


async def get_audit_store(services: ServicesDep) -> SqlAuditStore:
    return SqlAuditStore(services.database)


AuditDep = Annotated[SqlAuditStore, Depends(get_audit_store)]
