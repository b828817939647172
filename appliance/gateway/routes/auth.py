"""Browser sign-in with Keycloak, and one minimal signed-in page.

``GET /auth/login`` -> Keycloak (code + PKCE) -> ``GET /auth/callback`` -> session cookie
(HttpOnly, SameSite=Lax, Secure under TLS) -> ``GET /``. ``POST /auth/logout`` (CSRF
token in the form) ends the session here and at Keycloak (RP-initiated logout).
The chat and compliance pages come with the UI; this page only shows who is signed in.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from appliance.errors import AuditUnavailable
from appliance.gateway.acts import record_sign_in, sign_out_recorded
from appliance.gateway.deps import SESSION_COOKIE, ServicesDep, SignInDep, browser_session
from appliance.gateway.services import GatewayServices
from appliance.identity.browser import SignInFailed
from appliance.identity.principal import AuthMethod

__all__ = ["LOGIN_COOKIE", "router"]

router = APIRouter(tags=["sign-in"], include_in_schema=False)

LOGIN_COOKIE = "appliance_login"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # No form-action: Chromium applies it to the redirect to Keycloak's logout page.
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
}


def _base_url(request: Request, services: GatewayServices) -> str:
    return services.settings.oidc.public_url or str(request.base_url).rstrip("/")


def _secure(request: Request, services: GatewayServices) -> bool:
    mode = services.settings.oidc.cookie_secure
    if mode != "auto":
        return mode == "always"
    return _base_url(request, services).startswith("https://")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


@router.get("/auth/login")
async def login(
    request: Request, signin: SignInDep, services: ServicesDep, next: str = "/"
) -> Response:
    base = _base_url(request, services)
    url, binding = await signin.start(
        redirect_uri=f"{base}/auth/callback", next_path=next, now=services.clock().timestamp()
    )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        LOGIN_COOKIE, binding, max_age=600, path="/auth", httponly=True, samesite="lax",
        secure=_secure(request, services),
    )  # fmt: skip
    return response


@router.get("/auth/callback")
async def callback(
    request: Request,
    signin: SignInDep,
    services: ServicesDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    again = '<p><a href="/auth/login">Sign in again</a></p>'
    if error or not code or not state:
        reason = f"the identity provider answered: {error}" if error else "incomplete answer"
        return await _sign_in_failed(request, services, reason[:200])
    try:
        session_id, session, next_path = await signin.finish(
            state=state,
            code=code,
            binding=request.cookies.get(LOGIN_COOKIE),
            now=services.clock().timestamp(),
        )
    except SignInFailed as failed:
        return await _sign_in_failed(request, services, failed.reason)
    try:
        await record_sign_in(services, request, method=AuthMethod.OIDC, principal=session.principal)
    except AuditUnavailable:
        services.sessions.delete(session_id)  # type: ignore[union-attr]
        return _page("Sign-in failed", f"<p>{escape(_AUDIT_DOWN)}</p>{again}", 503)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=int(services.settings.oidc.session_ttl_s), path="/",
        httponly=True, samesite="lax", secure=_secure(request, services),
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/auth")
    return response


_AUDIT_DOWN = "The audit log is unavailable, so signing in is not possible right now."


async def _sign_in_failed(request: Request, services: GatewayServices, reason: str) -> Response:
    """The failure page, after the failed attempt is in the audit log."""
    again = '<p><a href="/auth/login">Sign in again</a></p>'
    try:
        await record_sign_in(
            services, request, method=AuthMethod.OIDC, principal=None, failure=reason,
            status_code=400,
        )  # fmt: skip
    except AuditUnavailable:
        return _page("Sign-in failed", f"<p>{escape(_AUDIT_DOWN)}</p>{again}", 503)
    return _page("Sign-in failed", f"<p>{escape(reason)}</p>{again}", 400)


@router.get("/")
async def home(request: Request, services: ServicesDep) -> Response:
    """The minimal signed-in page: who you are, and a sign-out button."""
    if services.identity is None:  # embedded default: the chat page, API-key sign-in
        return RedirectResponse("/ui/chat", status_code=303)
    found = await browser_session(request, services)
    if found is None:
        return RedirectResponse("/auth/login?" + urlencode({"next": "/"}), status_code=303)
    session = found[1]
    who = session.principal
    roles = ", ".join(sorted(r for r in who.roles if r.startswith("appliance-"))) or "none"
    body = (
        f'<p id="signed-in-as">Signed in as <strong>{escape(who.username)}</strong></p>'
        f'<p id="roles">Appliance roles: {escape(roles)}</p>'
        f"<p>Team: {escape(who.team or '-')}</p>"
        '<form method="post" action="/auth/logout">'
        f'<input type="hidden" name="csrf_token" value="{escape(session.csrf_token)}">'
        '<button id="sign-out" type="submit">Sign out</button></form>'
    )
    return _page("Sovereign inference appliance", body)


def _same_origin(request: Request, base: str) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    want = urlsplit(base)
    got = urlsplit(origin)
    return (got.scheme, got.netloc) == (want.scheme, want.netloc)


@router.post("/auth/logout")
async def logout(request: Request, signin: SignInDep, services: ServicesDep) -> Response:
    base = _base_url(request, services)
    found = await browser_session(request, services)
    if found is None:
        response: Response = RedirectResponse("/auth/logged-out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    session_id, session = found
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    presented = next(iter(form.get("csrf_token", [])), None)
    if not _same_origin(request, base) or not session.csrf_matches(presented):
        return _page("Sign-out refused", "<p>The request did not come from this site.</p>", 403)
    await sign_out_recorded(services, request, session.principal)
    services.sessions.delete(session_id)  # type: ignore[union-attr]
    url = await signin.logout_url(session, post_logout_uri=f"{base}/auth/logged-out")
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/logged-out")
async def logged_out() -> Response:
    return _page(
        "Signed out",
        '<p id="signed-out">You are signed out.</p><p><a href="/auth/login">Sign in</a></p>',
    )
