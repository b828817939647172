"""The browser pages: API-key sign-in, chat, compliance console, admin.

Pages are server-rendered; their scripts call the JSON APIs with the session cookie and
the session's CSRF token (``x-csrf-token``), which each page carries in a meta tag.
Signing in with an API key creates the same server-side session as Keycloak sign-in
(``routes/auth.py``), for the key's principal.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from appliance.errors import AuditUnavailable
from appliance.gateway.acts import record_sign_in, sign_out_recorded
from appliance.gateway.deps import SESSION_COOKIE, ServicesDep, browser_session
from appliance.gateway.services import GatewayServices
from appliance.identity.browser import safe_next_path
from appliance.identity.policy import allowed_models
from appliance.identity.principal import AuthMethod
from appliance.identity.roles import Role
from appliance.identity.sessions import BrowserSession, new_secret
from appliance.ui import render_page

__all__ = ["ADMIN", "AUDITOR", "router"]

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

AUDITOR = Role.AUDITOR
ADMIN = Role.ADMIN
_LOGIN_CSRF = "appliance_ui_login"
_AUDIT_DOWN = "The audit log is unavailable, so signing in is not possible right now."


def _secure(request: Request, services: GatewayServices) -> bool:
    mode = services.settings.oidc.cookie_secure
    if mode != "auto":
        return mode == "always"
    base = services.settings.oidc.public_url or str(request.base_url)
    return base.startswith("https://")


def _nav(session: BrowserSession) -> dict[str, Any]:
    who = session.principal
    return {
        "username": who.username,
        "team": who.team,
        "csrf_token": session.csrf_token,
        "is_auditor": who.has_role(AUDITOR),
        "is_admin": who.has_role(ADMIN),
        # Keycloak sessions end at Keycloak too (RP-initiated logout in routes/auth.py).
        "signout_action": "/auth/logout" if who.auth_method is AuthMethod.OIDC else "/ui/logout",
    }


async def _page_session(
    request: Request, services: GatewayServices, role: str | None = None
) -> BrowserSession | Response:
    """The signed-in session holding ``role`` (when given); else the page to show instead:
    a redirect to sign-in, or 403."""
    found = await browser_session(request, services)
    if found is None:
        target = "/ui/login?" + urlencode({"next": request.url.path})
        return RedirectResponse(target, status_code=303)
    session = found[1]
    if role is not None and not session.principal.has_role(role):
        return render_page(
            "forbidden.html", status=403, title="Not allowed", role=role, active="", **_nav(session)
        )
    return session


def _login_page(
    request: Request,
    services: GatewayServices,
    next_path: str,
    error: str | None = None,
    status: int = 400,
) -> Response:
    """The sign-in form (``status`` with ``error``), with a fresh login CSRF token in the
    form and in a cookie."""
    token = new_secret()
    response = render_page(
        "login.html",
        status=200 if error is None else status,
        title="Sign in",
        csrf_token=token,
        next=next_path,
        keycloak=services.settings.oidc.enabled,
        error=error,
    )
    response.set_cookie(
        _LOGIN_CSRF,
        token,
        max_age=600,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request, services),
    )
    return response


@router.get("/login")
async def login_form(request: Request, services: ServicesDep, next: str = "/ui/chat") -> Response:
    return _login_page(request, services, safe_next_path(next))


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))

    def field(name: str) -> str:
        return next(iter(form.get(name, [])), "").strip()

    next_path = safe_next_path(field("next") or "/ui/chat")
    expected = request.cookies.get(_LOGIN_CSRF, "")
    presented = field("csrf_token")
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        return _login_page(request, services, next_path, "The form expired. Please try again.")
    if services.sessions is None:
        return _login_page(request, services, next_path, "Browser sign-in is not available.")
    secret = field("api_key")
    now = services.clock()
    record = await anyio.to_thread.run_sync(lambda: services.api_keys.authenticate(secret, now=now))
    if record is None:
        failure = "That API key is not valid, revoked or expired."
        try:
            await record_sign_in(
                services, request, method=AuthMethod.API_KEY, principal=None,
                failure=failure, status_code=400,
            )  # fmt: skip
        except AuditUnavailable:
            return _login_page(request, services, next_path, _AUDIT_DOWN, status=503)
        return _login_page(request, services, next_path, failure)
    try:
        await record_sign_in(
            services, request, method=AuthMethod.API_KEY, principal=record.principal()
        )
    except AuditUnavailable:
        return _login_page(request, services, next_path, _AUDIT_DOWN, status=503)
    ttl = services.settings.oidc.session_ttl_s
    stamp = now.timestamp()
    # The key is looked up again every auth.api_key_cache_s (deps.browser_session), so a
    # revoke from anywhere ends this session as it stops the key's bearer use.
    session_id, _ = services.sessions.create(
        record.principal(),
        now=stamp,
        access_expires_at=stamp + services.settings.auth.api_key_cache_s,
        not_after=None if record.expires_at is None else record.expires_at.timestamp(),
    )
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(ttl),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, services),
    )
    response.delete_cookie(_LOGIN_CSRF, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    found = await browser_session(request, services)
    if found is not None and services.sessions is not None:
        session_id, session = found
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        presented = next(iter(form.get("csrf_token", [])), None)
        if not session.csrf_matches(presented):
            return render_page("forbidden.html", status=403, title="Sign-out refused", role="")
        await sign_out_recorded(services, request, session.principal)
        services.sessions.delete(session_id)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/chat")
async def chat_page(request: Request, services: ServicesDep) -> Response:
    session = await _page_session(request, services)
    if isinstance(session, Response):
        return session
    # The chat page offers chat models only: an embedding model cannot answer.
    embedding = {u.model for u in services.settings.effective_upstreams() if u.kind != "chat"}
    served = [name for name in services.upstream.models() if name not in embedding]
    models = allowed_models(session.principal, served, services.settings.policy.role_models)
    return render_page(
        "chat.html",
        title="Chat",
        active="chat",
        models=models,
        # When a receipt's proof can be fetched: the log signs a checkpoint about this often.
        checkpoint_interval_s=services.settings.audit.checkpoint_interval_s,
        **_nav(session),
    )


@router.get("/console")
async def console_page(request: Request, services: ServicesDep) -> Response:
    session = await _page_session(request, services, AUDITOR)
    if isinstance(session, Response):
        return session
    return render_page(
        "console.html", title="Compliance console", active="console", **_nav(session)
    )


@router.get("/admin")
async def admin_page(request: Request, services: ServicesDep) -> Response:
    session = await _page_session(request, services, ADMIN)
    if isinstance(session, Response):
        return session
    engine = services.settings.engine
    plan = {
        "Local engine": "enabled" if engine.enabled else "disabled (external engines)",
        "Device": engine.device,
        "Served model": engine.served_model_name,
        "Parallelism (TP x PP x DP)": (
            f"{engine.tensor_parallel_size} x {engine.pipeline_parallel_size} x "
            f"{engine.data_parallel_size}"
        ),
        "Max context (tokens)": str(engine.max_model_len),
    }
    return render_page(
        "admin.html",
        title="Administration",
        active="admin",
        plan=plan,
        roles=sorted(r for r in session.principal.roles if r.startswith("appliance-")),
        own_key_id=session.principal.key_id,
        **_nav(session),
    )
