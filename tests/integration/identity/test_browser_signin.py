"""Browser sign-in without a browser: code + PKCE through the provider's login page,
the session cookie, CSRF, refresh, and RP-initiated logout (see tests/ui for Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway.services import GatewayServices, utc_now
from tests.oidc.provider import KeycloakRealm
from tests.support.fake_vllm import FakeState
from tests.support.oidc_gateway import live_gateway, oidc_settings
from tests.support.requests import CHAT, chat_body


@pytest.fixture
def live(tmp_path: Path, fake_vllm: tuple[str, FakeState], oidc_realm: KeycloakRealm) -> Iterator:  # type: ignore[type-arg]
    with live_gateway(oidc_settings(tmp_path, fake_vllm[0], oidc_realm)) as running:
        yield running


def sign_in(browser: httpx.Client, base: str, user: str = "alice") -> httpx.Response:
    """Follow the redirects a browser would, filling in the provider's login form."""
    page = browser.get(f"{base}/", follow_redirects=True)
    action = re.search(r'action="([^"]+)"', page.text)
    assert action and "login-actions" in action.group(1), page.text
    target = httpx.URL(str(page.url)).join(action.group(1))
    return browser.post(
        target, data={"username": user, "password": f"{user}-pass"}, follow_redirects=True
    )


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_sign_in_session_csrf_and_logout(live) -> None:
    base, app, audit = live
    with httpx.Client() as browser:
        home = sign_in(browser, base)
        assert home.status_code == 200 and str(home.url) == f"{base}/"
        assert "Signed in as <strong>alice</strong>" in home.text
        assert "appliance-user" in home.text and "research" in home.text
        assert home.headers["cache-control"] == "no-store"

        callback = next(r for r in home.history if r.url.path == "/auth/callback")
        cookie = callback.headers["set-cookie"].lower()
        assert "appliance_session=" in cookie
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie

        # The session works for the API from the page, but only with the CSRF header.
        refused = browser.post(f"{base}{CHAT}", json=chat_body())
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        token = csrf_of(home)
        ok = browser.post(f"{base}{CHAT}", json=chat_body(), headers={"x-csrf-token": token})
        assert ok.status_code == 200, ok.text

        # Logout is a POST with the CSRF token; a forged one is refused.
        forged = browser.post(f"{base}/auth/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        cross = browser.post(
            f"{base}/auth/logout", data={"csrf_token": token},
            headers={"origin": "https://evil.example"},
        )  # fmt: skip
        assert cross.status_code == 403
        out = browser.post(f"{base}/auth/logout", data={"csrf_token": token})
        assert out.status_code == 303
        end_session = urlparse(out.headers["location"])
        assert end_session.path.endswith("/protocol/openid-connect/logout")
        query = parse_qs(end_session.query)
        assert query["post_logout_redirect_uri"] == [f"{base}/auth/logged-out"]
        assert "id_token_hint" in query
        assert 'appliance_session=""' in out.headers["set-cookie"]

        # Both ends of the session are on record, with the Keycloak user.
        (signed_in,) = [r for r in audit.records if r.event is AuditEvent.SIGN_IN]
        assert signed_in.outcome is Outcome.OK and signed_in.username == "alice"
        assert signed_in.params == {"method": "oidc"}
        (signed_out,) = [r for r in audit.records if r.event is AuditEvent.SIGN_OUT]
        assert signed_out.subject == signed_in.subject

        # The session is gone on the gateway at once.
        after = browser.get(f"{base}/", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"].startswith("/auth/login")
        services: GatewayServices = app.state.services
        assert services.sessions is not None and len(services.sessions) == 0


def test_refresh_renews_the_session_after_the_access_token_expires(live) -> None:
    base, app, _ = live
    services: GatewayServices = app.state.services
    with httpx.Client() as browser:
        home = sign_in(browser, base)
        assert home.status_code == 200
        # Past the access token's exp (300 s), within the 30 s leeway for the fresh one.
        services.clock = lambda: utc_now() + timedelta(seconds=310)
        again = browser.get(f"{base}/")
        assert again.status_code == 200 and "alice" in again.text


@pytest.mark.parametrize("params", ["state=unknown&code=x", "error=access_denied", ""])
def test_bad_callbacks_are_refused(live, params: str) -> None:
    base, _, audit = live
    response = httpx.get(f"{base}/auth/callback?{params}")
    assert response.status_code == 400
    assert "Sign-in failed" in response.text
    assert "set-cookie" not in response.headers
    (failed,) = [r for r in audit.records if r.event is AuditEvent.SIGN_IN]
    assert failed.outcome is Outcome.DENIED and failed.status_code == 400
    assert failed.subject is None and failed.denial_reason


def test_callback_from_another_browser_is_refused(live) -> None:
    base, _, _ = live
    with httpx.Client() as victim:
        started = victim.get(f"{base}/auth/login")
        state = parse_qs(urlparse(started.headers["location"]).query)["state"][0]
    response = httpx.get(f"{base}/auth/callback?state={state}&code=stolen")
    assert response.status_code == 400 and "another browser" in response.text


def test_open_redirect_through_next_is_neutralised(live) -> None:
    base, _, _ = live
    with httpx.Client() as browser:
        browser.get(f"{base}/auth/login?next=//evil.example/x")
        page = sign_in(browser, base)  # a fresh login from "/" lands on "/"
        assert str(page.url).startswith(base)


def test_secure_cookie_when_configured(tmp_path, fake_vllm, oidc_realm) -> None:
    settings = oidc_settings(tmp_path, fake_vllm[0], oidc_realm, cookie_secure="always")
    with live_gateway(settings) as (base, _, _), httpx.Client() as browser:
        response = browser.get(f"{base}/auth/login")
        assert "secure" in response.headers["set-cookie"].lower()
